"""A run as data: what a command asks for, in groups that every command shares.

A command line (or a test, or a script) fills these frozen dataclasses and hands them to one library
function (:func:`mldeploy.rollout.runs.run_detect`, :func:`~mldeploy.rollout.runs.run_eval`,
:func:`mldeploy.rollout.rehearsal.prepare`); nothing below the CLI knows a flag's spelling except to name
it in an error. Each group is declared once as options in :mod:`mldeploy.cli.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mldeploy.errors import UsageError


@dataclass(frozen=True)
class Inputs:
    """What to run on: image files, folders, globs, ``s3://`` prefixes and ``@MANIFEST`` files, or a
    server's capture (``--capture DIR``)."""

    paths: tuple[str, ...] = ()
    capture: Path | None = None


@dataclass(frozen=True)
class EngineChoice:
    """Where the images are answered: an engine of :data:`mldeploy.rollout.engines.ENGINES` and its options."""

    name: str = "local"
    workers: int = 1  # local: inference threads (2 runs a pair's sides side by side, --parallel)
    address: str | None = None  # ray: None (a cluster of this machine for this run), auto, ray://HOST:10001
    actors: int | None = None
    actor_cpus: float | None = None

    def make(self, project):
        """The engine, checked: options of another engine are refused, an extra that is missing is named."""
        from mldeploy.rollout.engines import get_engine

        ray_given = [flag for flag, value in (("--address", self.address), ("--actors", self.actors), ("--actor-cpus", self.actor_cpus))
                     if value is not None]
        if self.name == "local":
            if ray_given:
                raise UsageError(f"{', '.join(ray_given)} needs --engine ray")
            return get_engine("local", project, self.workers)
        if self.name == "ray":
            from mldeploy.rollout.engines.ray import RayOptions

            return get_engine("ray", project, RayOptions(self.address, self.actors, self.actor_cpus))
        return get_engine(self.name, project)  # an unknown name: refused there, with the known ones


@dataclass(frozen=True)
class Reports:
    """Report files written beside the printed result (checked before the run, never over an input)."""

    json: Path | None = None  # --report
    junit: Path | None = None
    html: Path | None = None
    records: Path | None = None  # every image's row as it finishes (shadow, canary)
    records_format: str = "jsonl"

    @property
    def files(self) -> tuple[Path | None, ...]:
        return (self.json, self.junit)

    @property
    def folders(self) -> tuple[tuple[Path | None, str], ...]:
        return ((self.html, "--html"), (self.records, "--records"))


@dataclass(frozen=True)
class Labels:
    """Ground truth (``--labels``): the file or folder, a class-name map, YOLO's names."""

    path: Path | None = None
    label_map: str | None = None
    names: Path | None = None
    min_labeled: int = 50  # with --capture: labelled requests needed before accuracy gates apply (agreement before)


@dataclass(frozen=True)
class Gates:
    """The gate bounds given on the command line (name -> bound), the policy and what an inconclusive
    gate means; ``[gates]`` in mldeploy.toml and the default policy fill in the rest."""

    bounds: Mapping[str, float | None] = field(default_factory=dict)
    policy: str | None = None
    on_inconclusive: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Which two versions, and how their boxes are matched."""

    new: str
    old: str | None = None  # default: the live version of ``model``
    model: str = "faces"
    classes: str | None = None
    iou: float = 0.5
    drift_iou: float = 0.8


@dataclass(frozen=True)
class CanarySteps:
    """A canary's ramp: shares of the traffic, the router's salt, and whether anything may change."""

    steps: str = "5,25,50,100"
    salt: str = ""
    dry_run: bool = False
    command: str = ""  # the command line, for the history


@dataclass(frozen=True)
class RehearsalSpec:
    """``shadow`` (``canary`` is None) or ``canary``: everything :func:`~mldeploy.rollout.rehearsal.prepare` needs."""

    comparison: Comparison
    inputs: Inputs = field(default_factory=Inputs)
    labels: Labels = field(default_factory=Labels)
    gates: Gates = field(default_factory=Gates)
    reports: Reports = field(default_factory=Reports)
    engine: EngineChoice = field(default_factory=EngineChoice)
    canary: CanarySteps | None = None

    @property
    def kind(self) -> str:
        return "shadow" if self.canary is None else "canary"


@dataclass(frozen=True)
class DetectSpec:
    """``detect``: one version on the inputs, its threshold and labels, annotated copies."""

    model: str
    inputs: Inputs = field(default_factory=Inputs)
    conf: float | None = None
    classes: str | None = None
    save: Path | None = None
    engine: EngineChoice = field(default_factory=EngineChoice)


@dataclass(frozen=True)
class EvalSpec:
    """``eval``: one version scored against labels, with an optional ``--min-map`` gate."""

    model: str
    labels: Labels
    inputs: Inputs = field(default_factory=Inputs)
    gates: Gates = field(default_factory=Gates)
    reports: Reports = field(default_factory=Reports)
    engine: EngineChoice = field(default_factory=EngineChoice)

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "labels": str(self.labels.path), **extra}


@dataclass(frozen=True)
class BenchSpec:
    """``bench``: the candidates (versions x threads x concurrency), how each is judged, and the choice."""

    model: str
    inputs: Inputs = field(default_factory=Inputs)
    versions: str | None = None  # "v1,v2" or refs across models; None: every version of model that can run here
    threads: str | None = None  # "1,2"
    concurrency: str | None = None  # "1,4"
    requests: int = 100  # timed requests per candidate (p95 within 10% across runs here at 100; 20% at 50)
    cpus: int | None = None  # pin to this many cores
    labels: Labels = field(default_factory=Labels)
    reference: str | None = None  # without labels: agreement with this version (default: the live one)
    iou: float = 0.5
    constraints: Any = None  # mldeploy.rollout.bench.Constraints
    objective: str = "latency"
    engine: EngineChoice = field(default_factory=EngineChoice)
