"""The Ray engine: replays and detect runs spread over a Ray cluster's CPUs with Ray Data.

Images are read as bytes (``ray.data.read_binary_files``, local files and objects in storage through the
same pyarrow filesystems as the local engine: one unreadable file must not fail the whole dataset the
way ``read_images`` does, and one gone missing gives an error row) and handed in batches to a pool of :class:`ReplayActor`. Each actor
loads the versions that run once (pins checked, as on the driver), decodes each image with mldeploy's own
checks, and calls the same :meth:`~mldeploy.rollout.pairs.Pair.answer` as the local engine (warm-up,
alternating order, re-timed outliers), returning a compact row per image: the answers, their times, or
the error. The driver rebuilds each record as it
arrives and folds it into the same streaming :class:`~mldeploy.rollout.shadow.ShadowMetric` as the local
engine (which keeps counts, a latency sample and the most disagreeing images, never every image), so
the two engines' agreement figures are identical.

The pool is sized so that reading can run beside it: actors x CPUs per actor must leave at least one
CPU of the cluster free (two actors of one CPU each on a 2-CPU cluster hung forever, their read tasks
starved), and a configuration that cannot is refused before anything starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from mldeploy import errors as error_types
from mldeploy.errors import InputNotFoundError, MldeployError, UsageError
from mldeploy.models.base import ModelSpec
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.rollout.pairs import SIDES, Pair
from mldeploy.rollout.shadow import ShadowRecord
from mldeploy.rollout.sides import Side, Version, answer_full_size

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
    _probe(options.address)
    try:
        if options.address is None:  # never join a stale cluster by accident; bind to the loopback only
            ray.init(address="local", _node_ip_address="127.0.0.1", **kwargs)
            _reap_when_gone()
        else:
            host = options.address.split("://")[-1].rsplit(":", 1)[0]
            if host in ("127.0.0.1", "localhost"):  # a head node on this machine's loopback: be a driver on it too
                kwargs["_node_ip_address"] = "127.0.0.1"
            ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--address {options.address}: cannot connect to a Ray cluster: {str(exc).splitlines()[0]}") from None
    return ray


#: The reaper of this driver's own cluster (see :func:`_reap_when_gone`); its stdin is held open until the driver ends.
_reaper = None

_REAPER = """
import os, signal, sys
sys.stdin.buffer.read()  # returns when the driver ends, however it ends (kill -9 included): the pipe closes

def stat(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()

listed = dict(entry.split(":") for entry in sys.argv[1:])
children = {}
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            children.setdefault(stat(name)[1], []).append(name)
        except (OSError, IndexError):
            pass
doomed, todo = [], [pid for pid, started in listed.items() if os.path.exists(f"/proc/{pid}") and stat(pid)[19] == started]
while todo:  # the processes the cluster had, and what they started since (the workers), before any is killed
    pid = todo.pop()
    doomed.append(pid)
    todo.extend(children.get(pid, ()))
for pid in doomed:
    try:
        os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
"""


def _processes_under(root: int) -> list[str]:
    """``pid:start time`` of every process descended from ``root`` (Linux's /proc), for the reaper."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append((int(name), fields[19]))
    found, todo = [], [root]
    while todo:
        for pid, started in parents.get(todo.pop(), ()):
            found.append(f"{pid}:{started}")
            todo.append(pid)
    return found


def _reap_when_gone() -> None:
    """Start a small process that kills the cluster this driver started once the driver is gone. Ray stops
    its own processes on a clean exit, but after a kill -9 of the driver two agents (DashboardAgent,
    RuntimeEnvAgent) stayed alive for good (measured: still there after 60 s), and workers took up to
    30 s to notice. The reaper kills the processes the cluster had when it started (pid and start time
    checked, so a reused number is never hit) and every process they started since."""
    global _reaper
    import subprocess

    if not os.path.isdir("/proc") or _reaper is not None:
        return
    _reaper = subprocess.Popen([sys.executable, "-c", _REAPER, *_processes_under(os.getpid())], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _release_reaper() -> None:
    """The driver is done with its cluster (after ``ray.shutdown``): the reaper kills what is left, and goes."""
    global _reaper
    if _reaper is not None:
        _reaper.stdin.close()
        _reaper.wait(timeout=10)
        _reaper = None


#: Seconds to wait for a head node's port to answer before giving up (Ray itself retries for minutes).
CONNECT_SECONDS = 5


def _probe(address: str | None) -> None:
    """A head node named ``HOST:PORT`` must accept a connection within :data:`CONNECT_SECONDS`: Ray retries
    a port where nothing listens for minutes, printing a line every 5 s. ``auto`` and ``ray://`` are Ray's."""
    if address is None or address == "auto" or "://" in address:
        return
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        why = "nothing answers there" if isinstance(exc, (ConnectionRefusedError, TimeoutError, socket.timeout)) else str(exc) or type(exc).__name__
        raise UsageError(f"--address {address}: cannot connect to a Ray cluster: {why} (waited {CONNECT_SECONDS} s)") from None


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
            _release_reaper()


def pool_size(cluster_cpus: float, options: RayOptions) -> tuple[int, float]:
    """Actors and CPUs per actor that leave one CPU for reading; refuses what does not."""
    cpus = options.actor_cpus if options.actor_cpus is not None else (1.0 if cluster_cpus >= 4 else 0.5)
    actors = options.actors if options.actors is not None else max(1, int((cluster_cpus - 1) // cpus))
    if actors * cpus > cluster_cpus - 1 + 1e-9:
        raise UsageError(f"--actors {actors} x --actor-cpus {cpus:g} = {actors * cpus:g} CPUs leaves no CPU for reading images on a cluster of "
                         f"{cluster_cpus:g}: use at most {cluster_cpus - 1:g} CPUs for actors (fractions are fine, e.g. --actor-cpus 0.5)")
    return actors, cpus



class _AnsweredOnDriver:
    """A side that does not run (a capture's recorded answers): the driver, which holds the records, answers it."""

    timed = False

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec


def _open_project(state_dir: str | None, config_path: str | None, cwd: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mldeploy.project import Project

    return Project(state_dir=state_dir or None, config_path=Path(config_path) if config_path else None, cwd=Path(cwd))


def _named(path) -> ImageInput:
    """An actor's image: only its name travels (the driver holds the inputs)."""
    return ImageInput(Path(str(path)), str(path), Path("/"))


def _side_row(result: DetectionResult) -> tuple[Any, float, str | None]:
    from mldeploy.capture.records import answer_to_json

    if result.ok:
        return answer_to_json(result.detections), result.seconds, None
    return None, 0.0, f"{type(result.error).__name__}:{result.error}"


class ReplayActor:
    """The pair's versions that run, loaded once per actor; ``__call__`` answers a batch of images (bytes
    and paths) through :meth:`Pair.answer`. ``old=None``: a capture replay, whose old answers the driver reads."""

    def __init__(self, state_dir: str | None, config_path: str | None, old: str | None, new: str, labels: Sequence[str] | None, cwd: str,
                 old_ref: str) -> None:
        project = _open_project(state_dir, config_path, cwd)
        registry = project.registry()
        old_side = Version(registry.resolve(old), project.load) if old is not None else _AnsweredOnDriver(ModelSpec(*old_ref.split("@", 1), "recorded", ()))
        self.pair = Pair(old_side, Version(registry.resolve(new), project.load), labels=list(labels) if labels else None)
        self.index = 0

    def __call__(self, batch: dict) -> dict:
        from mldeploy.images import decode_image

        keys = ("path", "sha256", "input_error", *(f"{side}{part}" for side in SIDES for part in ("", "_seconds", "_error")))
        out: dict[str, list] = {k: [] for k in keys}
        for path, data in zip(batch["path"], batch["bytes"]):
            row = dict.fromkeys(keys)
            row.update(path=str(path), sha256=hashlib.sha256(bytes(data)).hexdigest(), old_seconds=0.0, new_seconds=0.0)
            try:
                image = decode_image(bytes(data))
            except MldeployError as exc:
                row["input_error"] = f"{type(exc).__name__}:{exc}"
            else:
                answers = self.pair.answer(self.index, image, _named(path))
                self.pair.retime(self.index, image, answers)
                for side, result in answers.items():
                    row[side], row[f"{side}_seconds"], row[f"{side}_error"] = _side_row(result)
                self.index += 1
            for key in out:
                out[key].append(row[key])
        return out


class DetectActor:
    """One version, loaded once per actor; ``__call__`` runs it on a batch of images (``detect``, ``eval``)."""

    def __init__(self, state_dir: str | None, config_path: str | None, ref: str, cwd: str, conf: float | None = None,
                 labels: Sequence[str] | None = None, reduced_decode: bool = True) -> None:
        project = _open_project(state_dir, config_path, cwd)
        self.side = Version(project.registry().resolve(ref), project.load)
        self.conf, self.labels = conf, list(labels) if labels else None
        self.min_side = self.side.min_input_side if reduced_decode else None  # decoded as the local engine decodes

    def __call__(self, batch: dict) -> dict:
        from mldeploy.images import decode_image_at_least

        out: dict[str, list] = {"path": [], "answer": [], "seconds": [], "error": []}
        for path, data in zip(batch["path"], batch["bytes"]):
            try:
                image, full = decode_image_at_least(bytes(data), self.min_side)
            except MldeployError as exc:
                answer, seconds, error = None, 0.0, f"{type(exc).__name__}:{exc}"
            else:
                answer, seconds, error = _side_row(answer_full_size(self.side, image, full, _named(path), self.labels, self.conf))
            for key, value in (("path", str(path)), ("answer", answer), ("seconds", seconds), ("error", error)):
                out[key].append(value)
        return out


class RayEngine:
    """Runs on a Ray cluster (``--engine ray``): see the module's notes. ``project`` tells an actor how to
    open the same versions as the driver."""

    name = "ray"
    loads_here = False  # the actors load, during the run

    def __init__(self, project, options: RayOptions | None = None) -> None:
        require_ray()
        self.project, self.options = project, options or RayOptions()

    @property
    def settings(self) -> dict:
        return {"engine": "ray", "address": self.options.address or "local"}

    def prepare(self, *sides: Side) -> None:
        """What must come first on the driver: a pool that cannot fit this machine's own cluster, and the
        pins of the versions that will run (one line here, not an error in every actor). Nothing loads
        here: the actors load."""
        if self.options.address is None:  # a cluster of this machine: its CPUs are known before starting it
            pool_size(float(os.cpu_count() or 1), self.options)
        for side in sides:
            if side.timed:
                self.project.check_pins(side.spec)

    def session(self):
        return session(self.options)

    def bench(self, job):
        """One bench job as a Ray task in a worker process of its own (``max_calls=1``: the worker exits
        after it, memory and thread settings with it), on the cluster's CPUs: where it will be deployed."""
        import ray

        from mldeploy.rollout.bench import measure

        cpus = float(min(job.cpus or job.threads, max(1.0, ray.cluster_resources().get("CPU", 1))))
        return ray.get(ray.remote(max_calls=1, num_cpus=cpus)(measure).remote(job))

    def _pool(self, ray, items: Sequence[ImageInput], actor, **kwargs):
        actors, actor_cpus = pool_size(float(ray.cluster_resources().get("CPU", 1)), self.options)
        dataset, by_path = _read(ray, items)
        return by_path, dataset.map_batches(actor, batch_size=4, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=actor_cpus,
                                            fn_constructor_kwargs={**_project_args(self.project), **kwargs})

    def detect(self, side: Side, items: Sequence[ImageInput], *, conf: float | None = None, labels: Sequence[str] | None = None,
               writer=None, reduced_decode: bool = True) -> Iterator[DetectionResult]:
        """``side`` on every image, on the cluster: one result per image, in input order (each is yielded as
        soon as those before it are in). Annotated copies are written by the local engine only."""
        from mldeploy.capture.records import answer_from_json

        if writer is not None:
            raise UsageError("--save writes annotated copies from this machine: use --engine local")
        ray = connect(self.options)
        by_path, found = self._pool(ray, items, DetectActor, ref=side.spec.ref, conf=conf, labels=list(labels) if labels else None,
                                    reduced_decode=reduced_decode)
        seen = bytearray(len(items))
        waiting: dict[int, DetectionResult] = {}
        next_index = 0
        for row in found.iter_rows():
            for index in by_path.all(_local(row["path"], by_path)):
                seen[index] = 1
                error = _error(row["error"])
                detections = answer_from_json(row["answer"]) if error is None else None
                waiting[index] = DetectionResult(items[index].display, side.spec.ref, detections, error, float(row["seconds"]))
            while next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1
        for index, error in _missing(items, seen):
            waiting[index] = DetectionResult(items[index].display, side.spec.ref, error=error)
        yield from (waiting[i] for i in sorted(waiting))

    def replay(self, pair: Pair, items: Sequence[ImageInput], offset: int = 0) -> Iterator[ShadowRecord]:
        """``pair`` on ``items`` on the cluster: one :class:`ShadowRecord` per image as Ray returns it (not
        in input order), numbered from ``offset`` (a canary step's slice continues the numbering of the
        steps before). Only the sides that run are sent to the actors; the driver completes the rest."""
        from mldeploy.capture.records import answer_from_json

        if not items:
            return
        ray = connect(self.options)
        by_path, replayed = self._pool(ray, items, ReplayActor, old=pair.old.spec.ref if pair.old.timed else None, new=pair.new.spec.ref,
                                       labels=list(pair.labels) if pair.labels else None, old_ref=pair.old.spec.ref)
        seen = bytearray(len(items))
        for row in replayed.iter_rows():
            for index in by_path.all(_local(row["path"], by_path)):
                seen[index] = 1
                item = items[index]
                input_error = _error(row["input_error"]) or _digest_error(item, row["sha256"])
                if input_error is not None:
                    yield pair.unreadable(offset + index, item, input_error)
                    continue
                answers = {}
                for side in SIDES:
                    if getattr(pair, side).timed:
                        error = _error(row[f"{side}_error"])
                        detections = answer_from_json(row[side]) if error is None else None
                        answers[side] = DetectionResult(item.display, getattr(pair, side).spec.ref, detections, error, float(row[f"{side}_seconds"]))
                yield pair.complete(offset + index, item, answers)
        for index, error in _missing(items, seen):
            yield pair.unreadable(offset + index, items[index], error)


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
    return {"state_dir": project.state_location,
            "config_path": str(Path(project.config_path).resolve()) if project.config_path else None, "cwd": str(project.cwd)}


def _digest_error(item: ImageInput, sha256: str) -> MldeployError | None:
    """The driver's check of a content-addressed input (a capture's blob): the bytes an actor read must be
    the ones named."""
    if item.expected_sha256 is None or item.expected_sha256 == sha256:
        return None
    from mldeploy.errors import InvalidImageError

    return InvalidImageError(f"does not hold the bytes captured (SHA-256 {sha256[:12]}, not {item.expected_sha256[:12]}): it was replaced or damaged")


def _error(text: str | None) -> MldeployError | None:
    if text is None:
        return None
    name, _, message = text.partition(":")
    kind = getattr(error_types, name, MldeployError)
    return kind(message) if isinstance(kind, type) and issubclass(kind, MldeployError) else MldeployError(message)


def _local(path: str, known: dict) -> str:
    """Ray names a local file by its absolute path, sometimes without the leading slash."""
    if path in known:
        return path
    with_root = "/" + path.lstrip("/")
    if with_root in known:
        return with_root
    raise KeyError(f"Ray returned a path mldeploy did not send: {path}")


def make(project, options: RayOptions | None = None) -> RayEngine:
    """The :data:`~mldeploy.rollout.engines.ENGINES` factory."""
    return RayEngine(project, options)
