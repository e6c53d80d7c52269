"""Options several commands share, declared once: single options, and option groups that a command
receives as one value of :mod:`mldeploy.rollout.spec` (the engine, the reports, the labels, the gates).

A command takes a group as a parameter whose default is the group (``engine: EngineChoice = ENGINE``);
:func:`with_groups` spreads the group's options into the signature Typer reads and builds the value
from them when the command runs. No command lists an engine, report or gate flag of its own.
"""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import typer

from mldeploy.models.registry import DEFAULT_MODEL  # noqa: F401 - the default of every --model, for the commands
from mldeploy.rollout.gates import AGREEMENT_QUALITY, GATES

StateDirOption = Annotated[
    Optional[str],
    typer.Option("--state", "--state-dir", envvar=["MLDEPLOY_STATE", "MLDEPLOY_STATE_DIR"], show_default=False, metavar="URL|DIR",
                 help="Where live versions and history are kept: postgresql://... for many replicas, or a folder "
                      "\\[default: \\[state] url in mldeploy.toml, else ./.mldeploy]."),
]
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", envvar="MLDEPLOY_CONFIG", show_default=False, metavar="FILE",
                 help="Project file: your versions and gates \\[default: ./mldeploy.toml if present]."),
]


CaptureOption = Annotated[Optional[Path], typer.Option(
    "--capture", metavar="DIR", show_default=False,
    help="Replay a server's capture (serve --capture) instead of images: its live answers are the reference.")]
_LABELS = typer.Option("--labels", metavar="FILE|DIR", show_default=False, rich_help_panel="Ground truth",
                       help="Ground truth: a COCO .json, a YOLO data.yaml or .txt folder, or a Pascal VOC .xml folder.")
LabelsOption = Annotated[Optional[Path], _LABELS]
LabelMapOption = Annotated[Optional[str], typer.Option(
    "--label-map", metavar="TRUTH=MODEL,...", show_default=False, rich_help_panel="Ground truth",
    help="Label names to the model's (person=face), or a file of such lines; NAME=- drops a class \\[default: \\[labels.map]].")]
NamesOption = Annotated[Optional[Path], typer.Option(
    "--names", metavar="FILE", show_default=False, rich_help_panel="Ground truth",
    help="YOLO class names, one a line, or a data.yaml \\[default: classes.txt or data.yaml beside the labels].")]
EngineOption = Annotated[str, typer.Option(
    "--engine", metavar="local|ray", rich_help_panel="Engine",
    help="local: this process; ray: a Ray cluster (pip install 'mldeploy\\[ray]').")]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", show_default=False, rich_help_panel="Engine", metavar="ADDRESS",
    help="Ray: auto (the running cluster) or ray://HOST:10001 \\[default: a cluster of this machine, for this run].")]
ActorsOption = Annotated[Optional[int], typer.Option(
    "--actors", min=1, show_default=False, rich_help_panel="Engine",
    help="Ray actors, each loading the versions once \\[default: what leaves one CPU for reading].")]
ActorCpusOption = Annotated[Optional[float], typer.Option(
    "--actor-cpus", min=0.05, show_default=False, rich_help_panel="Engine",
    help="CPUs per Ray actor \\[default: 1, or 0.5 on clusters under 4 CPUs].")]


ModelOption = Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="Model that bare versions belong to.")]
IouOption = Annotated[float, typer.Option("--iou", min=0.05, max=1.0, metavar="IOU", help="Least IoU for two boxes of a label to match.")]
DriftIouOption = Annotated[float, typer.Option("--drift-iou", min=0.05, max=1.0, metavar="IOU",
                                               help="A match under this IoU has drifted (--max-drift counts it).")]
PolicyOption = Annotated[Optional[str], typer.Option(
    "--gates", show_default=False, metavar="default|none", rich_help_panel="Gates (exit 3: one failed, 6: inconclusive)",
    help="default: the default policy's bounds where no flag or \\[gates] sets one; none: only the bounds you give "
         "\\[default: default].")]
InconclusiveOption = Annotated[Optional[str], typer.Option(
    "--inconclusive", show_default=False, metavar="fail|pass", rich_help_panel="Gates (exit 3: one failed, 6: inconclusive)",
    help="A gate with too little evidence: fail (exit 6), or pass (the verdict says so) \\[default: fail].")]
ClassesOption = Annotated[Optional[str], typer.Option("--classes", show_default=False, metavar="LABELS",
                                                      help="Compare only these labels, comma separated.")]
TopOption = Annotated[int, typer.Option("--top", min=0, metavar="N", help="Show the N most disagreeing images.")]
ReportOption = Annotated[Optional[Path], typer.Option("--report", show_default=False, rich_help_panel="Reports", metavar="FILE",
                                                      help="Write the result as JSON (a long replay: its errors and most disagreeing images).")]
JunitOption = Annotated[Optional[Path], typer.Option("--junit", show_default=False, rich_help_panel="Reports", metavar="FILE",
                                                     help="Write JUnit XML: a case per gate and per image listed.")]
HtmlOption = Annotated[Optional[Path], typer.Option("--html", show_default=False, rich_help_panel="Reports", metavar="DIR",
                                                    help="Write an HTML report into this folder.")]
RecordsOption = Annotated[Optional[Path], typer.Option(
    "--records", metavar="DIR", show_default=False, rich_help_panel="Reports",
    help="Write every image's row into this folder as it finishes.")]
class RecordsFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


RecordsFormatOption = Annotated[RecordsFormat, typer.Option(
    "--records-format", rich_help_panel="Reports",
    help="jsonl, or parquet (pip install 'mldeploy\\[s3]').")]
ParallelOption = Annotated[bool, typer.Option(
    "--parallel", rich_help_panel="Engine",
    help="Both versions at once on two threads: faster only when a version leaves a core idle; inflates both latencies.")]


def project(state_dir: Path | None, config: Path | None):
    from mldeploy.project import Project

    return Project(state_dir=state_dir, config_path=config)


def command_line() -> str:
    """The command as the user typed it, for the history's ``command`` column."""
    return shlex.join(["mldeploy", *sys.argv[1:]])




@dataclass(frozen=True)
class Group:
    """Options declared once (``name -> (annotation, default)``) and ``build(**values)`` that turns them into
    the one value a command receives."""

    options: dict[str, tuple[Any, Any]]
    build: Callable[..., Any]

    def parameters(self) -> list[inspect.Parameter]:
        return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                for name, (annotation, default) in self.options.items()]


def with_groups(func):
    """Spread every :class:`Group` default of ``func``'s parameters into Typer options; build each
    group's value from them when the command runs."""
    signature = inspect.signature(func, eval_str=True)  # typer reads a __signature__ as it is: no strings
    groups = {p.name: p.default for p in signature.parameters.values() if isinstance(p.default, Group)}
    params = [p for p in signature.parameters.values() if p.name not in groups]
    for group in groups.values():
        params += group.parameters()
    params.sort(key=lambda p: p.kind)  # positional-or-keyword ones first, as Python requires

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for name, group in groups.items():
            kwargs[name] = group.build(**{option: kwargs.pop(option) for option in group.options})
        return func(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def _project(state_dir: Path | None, config: Path | None):
    return project(state_dir, config)


#: ``--state-dir`` and ``--config``: the project every command works in.
PROJECT = Group({"state_dir": (StateDirOption, None), "config": (ConfigOption, None)}, _project)


def _engine(engine: str, address: str | None, actors: int | None, actor_cpus: float | None, parallel: bool = False):
    from mldeploy.rollout.spec import EngineChoice

    return EngineChoice(engine, 2 if parallel else 1, address, actors, actor_cpus)


_ENGINE_OPTIONS = {"engine": (EngineOption, "local"), "address": (AddressOption, None), "actors": (ActorsOption, None),
                   "actor_cpus": (ActorCpusOption, None)}
#: ``--engine`` and the Ray engine's options.
ENGINE = Group(_ENGINE_OPTIONS, _engine)
#: The same, with ``--parallel`` (a pair's two sides side by side, locally).
PAIR_ENGINE = Group({**_ENGINE_OPTIONS, "parallel": (ParallelOption, False)}, _engine)


def _labels(labels: Path | None, label_map: str | None, names: Path | None):
    from mldeploy.rollout.spec import Labels

    return Labels(labels, label_map, names)


MinLabeledOption = Annotated[int, typer.Option(
    "--min-labeled", metavar="N", min=1, rich_help_panel="Ground truth",
    help="With --capture: labelled requests ('capture label') needed before the accuracy gates judge; with fewer, agreement does.")]


def _labels_min(labels: Path | None, label_map: str | None, names: Path | None, min_labeled: int):
    from mldeploy.rollout.spec import Labels

    return Labels(labels, label_map, names, min_labeled)


#: ``--labels``, ``--label-map``, ``--names``, ``--min-labeled``: ground truth, optional (shadow, canary).
LABELS = Group({"labels": (LabelsOption, None), "label_map": (LabelMapOption, None), "names": (NamesOption, None),
                "min_labeled": (MinLabeledOption, 50)}, _labels_min)
#: The same without ``--min-labeled`` (eval).
EVAL_LABELS = Group({"labels": (LabelsOption, None), "label_map": (LabelMapOption, None), "names": (NamesOption, None)}, _labels)


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


FormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="table, or json: the full result on stdout.")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr: a bar on a terminal, else a line every 10% or 30 s.")]


@dataclass(frozen=True)
class Output:
    """How a result is printed, and the report files written beside it."""

    format: ReportFormat
    top: int
    progress: bool
    files: Any  # mldeploy.rollout.spec.Reports


def _reports(output: ReportFormat, top: int, progress: bool, report: Path | None, junit: Path | None, html: Path | None,
             records: Path | None = None, records_format: RecordsFormat = RecordsFormat.jsonl) -> Output:
    from mldeploy.rollout.spec import Reports

    if records is not None:  # checked before any image is listed: Parquet needs pyarrow
        from mldeploy.report.records import require_format

        require_format(records_format.value)
    return Output(output, top, progress, Reports(report, junit, html, records, records_format.value))


_REPORT_OPTIONS = {"output": (FormatOption, ReportFormat.table), "top": (TopOption, 10), "progress": (ProgressOption, True),
                   "report": (ReportOption, None), "junit": (JunitOption, None), "html": (HtmlOption, None)}
#: ``--format``, ``--top``, ``--progress`` and the report files (eval).
REPORTS = Group(_REPORT_OPTIONS, _reports)
#: The same with ``--records`` (shadow, canary: every image's row as it finishes).
REPLAY_REPORTS = Group({**_REPORT_OPTIONS, "records": (RecordsOption, None), "records_format": (RecordsFormatOption, RecordsFormat.jsonl)},
                       _reports)

GATES_PANEL = "Gates (exit 3: one failed, 6: inconclusive)"
#: A gate's value as a user types it.
UNIT_METAVARS = {"%": "SHARE", "ms": "MS", "x": "RATIO", "n": "N"}


def _gate_option(gate) -> tuple[Any, None]:
    default = f" \\[default: {gate.default:g}]" if gate.default is not None else ""
    if gate.truth_default is not None:
        default = f" \\[default with --labels: {gate.truth_default:g}]"
    elif gate.name in AGREEMENT_QUALITY:
        default = f" \\[default: {gate.default:g}; none with --labels]"
    elif gate.truth:
        default = " (needs --labels)"
    option = typer.Option(gate.flag, show_default=False, rich_help_panel=GATES_PANEL,
                          metavar=UNIT_METAVARS.get(gate.unit, "SHARE" if gate.share else "NUMBER"),
                          help=f"{'Upper' if gate.kind == 'max' else 'Lower'} bound on the {gate.what}{default}.")
    return Annotated[Optional[float], option], None


def _gates(policy: str | None = None, inconclusive: str | None = None, **bounds: float | None):
    from mldeploy.rollout.spec import Gates

    return Gates(bounds, policy, inconclusive)


#: ``--gates``, ``--inconclusive`` and one ``--max-...`` / ``--min-...`` per gate in :data:`GATES`.
GATES_GROUP = Group({"policy": (PolicyOption, None), "inconclusive": (InconclusiveOption, None),
                     **{name: _gate_option(gate) for name, gate in GATES.items()}}, _gates)
#: eval's gate: the version's mAP against the labels (the same gate as ``shadow --min-map``).
EVAL_GATES = Group({"min_map": _gate_option(GATES["min_map"])}, _gates)

PathsArgument = Annotated[Optional[List[str]], typer.Argument(
    metavar="PATH", show_default=False,
    help="Image files, folders (recursive), globs, s3://bucket/prefix, or @MANIFEST (a path or URI a line).")]
