"""``mldeploy bench``: what each candidate costs on this machine (or on N of its cores), how accurate it
is on the user's images, and which one to deploy under the user's limits.

A **candidate** is a version at a thread count and a concurrency. Each (version, threads) pair is
measured in a process of its own (:func:`measure`, run by the engine: a fresh spawned process locally, a
fresh Ray worker with ``--engine ray``), so one model's memory never hides another's and a thread count
set for one never leaks into the next. In that process:

* the version loads (``load``), then answers one image untimed-for-statistics (``first``: graph
  tracing, allocation, lazy initialisation, the cost a cold server's first request pays);
* each image is decoded the way ``detect`` decodes it and answered once, at concurrency 1: the answers
  (for accuracy) and the time per stage (decode, then the model's pre-process, forward and post-process
  where the backend marks them, else one ``model`` figure);
* for each concurrency ``c``, ``requests`` requests go through ``c`` threads at once, each decoding its
  image and asking the one shared detector, as ``serve`` does: request latency (decode, queueing,
  model) and images per second;
* peak memory is the process's maximum resident size (what ``/usr/bin/time -v`` reports).

The parent turns the raw times into percentiles with bootstrap intervals, scores the answers (against
labels, as ``eval`` does, or against a reference version, as ``shadow`` does), and :func:`choose` picks.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mldeploy.errors import UsageError
from mldeploy.models.base import ModelSpec
from mldeploy.models.threads import limit_threads
from mldeploy.pipeline import ImageInput

#: What --objective may optimise, and which way.
OBJECTIVES = {"latency": "p95 latency, lowest", "throughput": "images per second, highest", "memory": "peak memory, lowest",
              "accuracy": "mAP@0.5:0.95 with --labels, else F1 against the reference, highest"}
#: Bootstrap resamples of a percentile's interval (seeded: a rerun of the same times gives the same interval).
RESAMPLES = 1000


# -- what a measuring process is given and gives back ---------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One (version, threads) measurement, sent to a fresh process."""

    spec: ModelSpec
    threads: int
    concurrency: tuple[int, ...]
    items: tuple[ImageInput, ...]
    requests: int  # timed requests at each concurrency
    cpus: int | None = None  # pinned to this many cores (CPU affinity): what the target machine would have


@dataclass
class Measured:
    """Raw figures from :func:`measure`; the parent makes statistics of them."""

    ref: str
    threads: int
    load_seconds: float
    first_seconds: float
    answers: list[Any]  # per image: (xyxy, confidence, class_id, label, image_size), or an error string
    stages: dict[str, list[float]]  # seconds per image: decode, pre, forward, post (or model)
    latencies: dict[int, list[float]]  # concurrency -> request seconds
    walls: dict[int, float]  # concurrency -> seconds the requests took in all
    peak_mb: float
    cpus_used: int
    libraries: dict[str, str] = field(default_factory=dict)


def _libraries() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name, module in (("opencv", "cv2"), ("numpy", "numpy"), ("tensorflow", "tensorflow")):
        if module in sys.modules:
            versions[name] = str(getattr(sys.modules[module], "__version__", "?"))
    from mldeploy import __version__

    versions["mldeploy"] = __version__
    return versions


def measure(job: Job, clock: Callable[[], float] = time.perf_counter) -> Measured:
    """Measure ``job`` in this process (which should be fresh: see the module's notes)."""
    if job.cpus:
        os.sched_setaffinity(0, pick_cpus(job.cpus))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    limit_threads(job.threads)
    from mldeploy.models import load_detector
    from mldeploy.pipeline.inputs import read_input_at_least

    started = clock()
    detector = load_detector(job.spec)
    load_seconds = clock() - started
    min_side = detector.min_input_side
    first_image, _ = read_input_at_least(job.items[0], min_side)
    started = clock()
    try:
        detector.detect(first_image)
    except Exception:  # noqa: BLE001 - counted below, on the timed pass, with its message
        pass
    first_seconds = clock() - started
    del first_image

    stages: dict[str, list[float]] = {"decode": []}
    answers: list[Any] = []
    for item in job.items:  # one pass at concurrency 1: answers and stages
        started = clock()
        try:
            image, _ = read_input_at_least(item, min_side)
        except Exception as exc:  # noqa: BLE001 - an unreadable image is an answer too: an error
            answers.append(f"{type(exc).__name__}: {exc}")
            continue
        stages["decode"].append(clock() - started)
        try:
            detections, _, parts = detector.staged_detect(image)
        except Exception as exc:  # noqa: BLE001
            answers.append(f"{type(exc).__name__}: {exc}")
            continue
        for name, seconds in parts.items():
            stages.setdefault(name, []).append(seconds)
        answers.append((detections.xyxy, detections.confidence, detections.class_id, detections.label, detections.image_size))

    def request(n: int) -> float:
        begun = clock()
        try:
            image, _ = read_input_at_least(job.items[n % len(job.items)], min_side)
            detector.detect(image)
        except Exception:  # noqa: BLE001 - failures are in the answers already; the time still counts
            pass
        return clock() - begun

    latencies: dict[int, list[float]] = {}
    walls: dict[int, float] = {}
    for c in job.concurrency:
        with ThreadPoolExecutor(max_workers=c, thread_name_prefix="mldeploy-bench") as pool:
            begun = clock()
            latencies[c] = list(pool.map(request, range(job.requests)))
            walls[c] = clock() - begun
    return Measured(job.spec.ref, job.threads, load_seconds, first_seconds, answers, stages, latencies, walls, peak_mb(),
                    len(os.sched_getaffinity(0)), _libraries())


def peak_mb() -> float:
    """This process's peak resident size, MB: ``VmHWM``, the high-water mark of its own address space.
    Not ``getrusage``'s ``ru_maxrss``: Linux carries that across fork and exec, so a process spawned by a
    large one (a test runner holding 2 GB) would report the parent's peak as its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- statistics -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Percentile:
    value: float
    low: float
    high: float

    @property
    def ms(self) -> tuple[float, float, float]:
        return self.value * 1000, self.low * 1000, self.high * 1000


def percentile(seconds: Sequence[float], q: float, resamples: int = RESAMPLES, seed: int = 0) -> Percentile | None:
    """The ``q``-th percentile and its 90% bootstrap interval (seeded), or None without samples."""
    import numpy as np

    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    draws = np.percentile(values[rng.integers(0, values.size, (resamples, values.size))], q, axis=1)
    low, high = np.percentile(draws, [5, 95])
    return Percentile(float(np.percentile(values, q)), float(low), float(high))


@dataclass
class Accuracy:
    """Against labels (``map``, ``map50``, ``recall``, ``precision``) or against a reference version
    (``f1``, ``drift``, ``recall``, ``precision``): the same figures ``eval`` and ``shadow`` compute."""

    against: str  # "labels" or the reference's ref
    map: float | None = None
    map50: float | None = None
    f1: float | None = None
    drift: float | None = None
    precision: float | None = None
    recall: float | None = None
    errors: int = 0

    @property
    def score(self) -> float | None:
        """What --objective accuracy maximises: mAP against labels, else F1 against the reference."""
        return self.map if self.against == "labels" else self.f1


@dataclass
class Candidate:
    """One version at one thread count and one concurrency, with everything measured about it."""

    spec: ModelSpec
    threads: int
    concurrency: int
    load_seconds: float
    first_seconds: float
    latency: dict[str, Percentile | None]  # p50, p95, p99 of request latency at this concurrency
    images_per_second: float
    peak_mb: float
    files_mb: float
    stages_ms: dict[str, float]  # mean per image
    accuracy: Accuracy | None = None
    breaks: str | None = None  # the first constraint it breaks ("p95 212 ms > 150 ms"), or None

    @property
    def name(self) -> str:
        return f"{self.spec.ref} threads={self.threads} concurrency={self.concurrency}"

    def p(self, key: str) -> float | None:
        """A latency percentile in milliseconds."""
        value = self.latency.get(key)
        return None if value is None else value.value * 1000


def candidates_of(measured: Measured, spec: ModelSpec, accuracy: Accuracy | None) -> list[Candidate]:
    import statistics

    files = sum(Path(p).stat().st_size for p in spec.files.values() if Path(p).is_file()) / 1048576
    stages = {name: statistics.fmean(values) * 1000 for name, values in measured.stages.items() if values}
    out = []
    for c, latencies in measured.latencies.items():
        latency = {f"p{q}": percentile(latencies, q, seed=q) for q in (50, 95, 99)}
        rate = len(latencies) / measured.walls[c] if measured.walls[c] > 0 else 0.0
        out.append(Candidate(spec, measured.threads, c, measured.load_seconds, measured.first_seconds, latency, rate, measured.peak_mb,
                             files, stages, accuracy))
    return out


# -- the choice -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constraints:
    max_p95_ms: float | None = None
    max_memory_mb: float | None = None
    min_images_per_s: float | None = None
    min_map: float | None = None
    min_f1: float | None = None

    def check(self) -> None:
        for name, value in vars(self).items():
            if value is not None and (not math.isfinite(value) or value < 0):
                raise UsageError(f"--{name.replace('_', '-')} {value}: give a number of 0 or more")
        for name in ("min_map", "min_f1"):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise UsageError(f"--{name.replace('_', '-')} {value:g}: a share from 0 to 1")

    def first_broken(self, c: Candidate) -> str | None:
        """``p95 212 ms > 150 ms``: the first limit ``c`` breaks, in the order of the flags, or None."""
        p95 = c.p("p95")
        if self.max_p95_ms is not None and (p95 is None or p95 > self.max_p95_ms):
            return f"p95 {_n(p95)} ms > {self.max_p95_ms:g} ms"
        if self.max_memory_mb is not None and c.peak_mb > self.max_memory_mb:
            return f"peak memory {c.peak_mb:.0f} MB > {self.max_memory_mb:g} MB"
        if self.min_images_per_s is not None and c.images_per_second < self.min_images_per_s:
            return f"{c.images_per_second:.1f} images/s < {self.min_images_per_s:g}"
        a = c.accuracy
        if self.min_map is not None:
            value = a.map if a is not None else None
            if value is None or value < self.min_map:
                return f"mAP {_n(value, 3)} < {self.min_map:g}" if a is None or a.against == "labels" else "mAP needs --labels"
        if self.min_f1 is not None:
            value = a.f1 if a is not None else None
            if value is None or value < self.min_f1:
                return f"F1 {_n(value, 3)} < {self.min_f1:g}"
        return None


def _n(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _objective_key(objective: str) -> Callable[[Candidate], tuple]:
    """Sort key: best first. Ties go to the candidate that uses fewer threads, then less concurrency."""
    def tail(c: Candidate) -> tuple:
        return (c.threads, c.concurrency, c.spec.ref)

    if objective == "latency":
        return lambda c: (c.p("p95") if c.p("p95") is not None else math.inf, *tail(c))
    if objective == "throughput":
        return lambda c: (-c.images_per_second, *tail(c))
    if objective == "memory":
        return lambda c: (c.peak_mb, *tail(c))
    if objective == "accuracy":
        return lambda c: (-(c.accuracy.score if c.accuracy and c.accuracy.score is not None else -1.0),
                          c.p("p95") if c.p("p95") is not None else math.inf, *tail(c))
    raise UsageError(f"--objective {objective!r}: choose {', '.join(OBJECTIVES)}")


def choose(candidates: Sequence[Candidate], constraints: Constraints, objective: str) -> Candidate | None:
    """The best candidate by ``objective`` among those that meet every constraint (None if none does);
    every candidate's ``breaks`` names the first constraint it breaks."""
    key = _objective_key(objective)
    for c in candidates:
        c.breaks = constraints.first_broken(c)
    fitting = sorted((c for c in candidates if c.breaks is None), key=key)
    return fitting[0] if fitting else None


# -- the run ----------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    """What ``mldeploy bench`` found: every candidate, the one chosen (or None), why, and where."""

    candidates: list[Candidate]
    chosen: Candidate | None
    objective: str
    constraints: Constraints
    machine: dict[str, Any]
    settings: dict[str, Any]
    unmatched: list = field(default_factory=list)
    wall_seconds: float = 0.0
    measured_seconds: float = 0.0  # what the candidates' own measurements took (load, first, passes)

    @property
    def ranked(self) -> list[Candidate]:
        key = _objective_key(self.objective)
        return sorted(self.candidates, key=lambda c: (c.breaks is not None, key(c)))


def machine(cpus: int | None) -> dict[str, Any]:
    """The machine the figures belong to: CPU model, cores used of those here, memory."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        pass
    here = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"cpu": model, "cores_here": here, "cores_used": cpus or here, "memory_gb": round(memory, 1) if memory else None,
            "system": f"{platform.system()} {platform.release()}"}


def pick_cpus(n: int | None) -> tuple[int, ...] | None:
    """The first ``n`` of the cores this process may use, or None for all of them."""
    if n is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if n < 1 or n > len(allowed):
        raise UsageError(f"--cpus {n}: this machine lets mldeploy use {len(allowed)} core{'s' if len(allowed) != 1 else ''} (1 to {len(allowed)})")
    return tuple(allowed[:n])


def parse_counts(text: str | None, flag: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``: distinct counts of 1 or more."""
    if text is None:
        return default
    try:
        values = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: whole numbers separated by commas, e.g. 1,2") from None
    if not values or any(v < 1 or v > 256 for v in values):
        raise UsageError(f"{flag} {text!r}: each count from 1 to 256")
    return values


def run_bench(project, spec, *, on_job: Callable[[ModelSpec, int], None] | None = None, clock: Callable[[], float] = time.perf_counter) -> BenchResult:
    """Resolve the candidates of ``spec`` (:class:`~mldeploy.rollout.spec.BenchSpec`), measure each
    (version, threads) in a fresh process on the engine, score their answers, and choose.

    Raises:
        UsageError: no images, no versions, bad counts, an unknown objective, --min-map without labels.
    """
    from mldeploy.pipeline import collect_inputs
    from mldeploy.rollout.releases import resolve_version

    started = clock()
    constraints = spec.constraints
    constraints.check()
    _objective_key(spec.objective)
    registry = project.registry()
    refs = [r.strip() for r in (spec.versions or "").split(",") if r.strip()]
    versions = [resolve_version(registry, r, spec.model) for r in refs] if refs else list(registry.versions(spec.model))
    versions = [v for v in versions if not v.missing_files()] if not refs else versions  # --model alone: what can run here
    if not versions:
        raise UsageError(f"no version of {spec.model} can run here: give --versions, or see 'mldeploy models'")
    if spec.labels.path is None and constraints.min_map is not None:
        raise UsageError("--min-map judges against ground truth: add --labels FILE")
    reference = None
    if spec.labels.path is None:
        reference = resolve_version(registry, spec.reference or spec.model, spec.model)
        if reference.ref not in {v.ref for v in versions}:
            versions.append(reference)
    cores = spec.cpus or len(os.sched_getaffinity(0))
    threads = parse_counts(spec.threads, "--threads", (cores,))  # by default what serve runs with: every core it has
    concurrency = parse_counts(spec.concurrency, "--concurrency", (1,))
    images, unmatched = collect_inputs(spec.inputs.paths)
    if not images:
        raise UsageError("no images to bench on: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
    if spec.engine.name == "local":
        pick_cpus(spec.cpus)  # checked here, before anything loads (a Ray worker checks its own cores)
    cpus = spec.cpus
    for v in versions:
        project.check_pins(v)
    engine = spec.engine.make(project)
    requests = max(spec.requests, 1)
    items = tuple(images)
    truths = _truths(project, spec, versions, items)  # read before anything is measured: bad labels cost no wait
    measured: dict[tuple[str, int], Measured] = {}
    with engine.session():
        for v in versions:
            for t in threads:
                if on_job is not None:
                    on_job(v, t)
                measured[(v.ref, t)] = engine.bench(Job(v, t, concurrency, items, requests, cpus))
    accuracy = _accuracy(spec, versions, items, measured, reference, truths)
    candidates = [c for v in versions for t in threads for c in candidates_of(measured[(v.ref, t)], v, accuracy.get((v.ref, t)))]
    chosen = choose(candidates, constraints, spec.objective)
    spent = sum(m.load_seconds + m.first_seconds + sum(m.walls.values()) + sum(map(sum, m.stages.values())) for m in measured.values())
    first = next(iter(measured.values()))
    settings = {"model": spec.model, "versions": [v.ref for v in versions], "threads": list(threads), "concurrency": list(concurrency),
                "requests": requests, "images": len(items), "reference": reference.ref if reference else None,
                "labels": str(spec.labels.path) if spec.labels.path else None, "engine": spec.engine.name, **engine.settings,
                "live": sorted({f"{v.name}@{registry.default_version(v.name)}" for v in versions})}
    info = {**machine(cpus), "cores_used": first.cpus_used, "libraries": first.libraries}
    return BenchResult(candidates, chosen, spec.objective, constraints, info, settings, unmatched, clock() - started, spent)


def _truths(project, spec, versions, items) -> dict[tuple[str, ...], Any]:
    """The labels, read once per set of classes the versions have (as eval reads them); empty without --labels."""
    from mldeploy.truth.run import read_truths

    if spec.labels.path is None:
        return {}
    out: dict[tuple[str, ...], Any] = {}
    for v in versions:
        if tuple(v.classes) not in out:
            out[tuple(v.classes)] = read_truths(spec.labels.path, items, list(v.classes), label_map=spec.labels.label_map,
                                                project_map=project.settings.label_map, names=spec.labels.names)
    return out


def _accuracy(spec, versions, items, measured, reference, truths) -> dict[tuple[str, int], Accuracy]:
    """Each (version, threads)'s answers scored against the labels (``truths``, by classes), or against
    the reference's answers."""
    from mldeploy.compare import AgreementMetric, failed_comparison
    from mldeploy.detections import Detections
    from mldeploy.errors import InferenceError
    from mldeploy.pipeline import DetectionResult
    from mldeploy.truth.evaluate import evaluate
    from mldeploy.truth.run import score

    def results(m: Measured) -> list[DetectionResult]:
        return [DetectionResult(item.display, m.ref, error=InferenceError(answer)) if isinstance(answer, str)
                else DetectionResult(item.display, m.ref, Detections(*answer)) for item, answer in zip(items, m.answers)]

    spec_of = {v.ref: v for v in versions}
    base = None
    if reference is not None:
        base = results(measured[(reference.ref, min(t for (r, t) in measured if r == reference.ref))])
    scores: dict[tuple[str, int], Accuracy] = {}
    for (ref, t), m in measured.items():
        answered = results(m)
        errors = sum(not r.ok for r in answered)
        if truths:
            classes = list(spec_of[ref].classes)
            e = evaluate(ref, score(list(zip(items, answered)), truths[tuple(classes)]), classes)
            scores[(ref, t)] = Accuracy("labels", map=e.map, map50=e.map50, precision=e.precision, recall=e.recall, errors=errors)
            continue
        metric = AgreementMetric(spec.iou)
        for old, new in zip(base, answered):
            if old.ok:  # a new version's error counts the old boxes as missing, as in shadow
                metric.update(old.detections, new.detections) if new.ok else metric.add(failed_comparison(old.detections))
        a = metric.compute()
        scores[(ref, t)] = Accuracy(reference.ref, f1=a.f1, drift=a.drift, precision=a.precision, recall=a.recall, errors=errors)
    return scores


def measure_in_a_fresh_process(job: Job) -> Measured:
    """The local engine's way: one spawned process per job, gone (with its memory) when it is done."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, job).result()


