"""Options several commands share: the project's state and config, gates, and report files."""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from mldeploy.models.registry import DEFAULT_MODEL  # noqa: F401 - the default of every --model, for the commands
from mldeploy.rollout.gates import AGREEMENT_QUALITY, GATES

StateDirOption = Annotated[
    Optional[Path],
    typer.Option("--state-dir", envvar="MLDEPLOY_STATE_DIR", show_default=False,
                 help="Where live versions and history are kept \\[default: ./.mldeploy]."),
]
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", envvar="MLDEPLOY_CONFIG", show_default=False,
                 help="Project file with your own versions and gates \\[default: ./mldeploy.toml if present]."),
]


CaptureOption = Annotated[Optional[Path], typer.Option(
    "--capture", metavar="DIR", show_default=False,
    help="Replay a server's capture (serve --capture) instead of image files: the answers the live version gave are the reference, "
         "so it does not run again (latency ratio gates: not measured).")]
LabelsOption = Annotated[Optional[Path], typer.Option(
    "--labels", metavar="FILE|DIR", show_default=False, rich_help_panel="Ground truth",
    help="Ground-truth labels: a COCO .json, a YOLO data.yaml or folder of .txt, or a folder of Pascal VOC .xml.")]
LabelMapOption = Annotated[Optional[str], typer.Option(
    "--label-map", metavar="TRUTH=MODEL,...", show_default=False, rich_help_panel="Ground truth",
    help="Label class names to the model's (person=face), or a file of such lines; NAME=- leaves a class out \\[default: \\[labels.map] in mldeploy.toml].")]
NamesOption = Annotated[Optional[Path], typer.Option(
    "--names", metavar="FILE", show_default=False, rich_help_panel="Ground truth",
    help="YOLO labels: the class names, one per line (or a data.yaml) \\[default: classes.txt or data.yaml beside them].")]
EngineOption = Annotated[str, typer.Option(
    "--engine", metavar="local|ray", rich_help_panel="Engine",
    help="local: this process; ray: a Ray cluster (pip install 'mldeploy\\[ray]').")]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", show_default=False, rich_help_panel="Engine",
    help="With --engine ray: auto (the running cluster) or ray://HOST:10001 \\[default: a cluster of this machine for this run].")]
ActorsOption = Annotated[Optional[int], typer.Option(
    "--actors", min=1, show_default=False, rich_help_panel="Engine",
    help="With --engine ray: replay actors, each loading both versions once \\[default: what leaves one CPU for reading].")]
ActorCpusOption = Annotated[Optional[float], typer.Option(
    "--actor-cpus", min=0.05, show_default=False, rich_help_panel="Engine",
    help="With --engine ray: CPUs per actor \\[default: 1, or 0.5 on clusters under 4 CPUs].")]


def ray_options(engine: str, address: str | None, actors: int | None, actor_cpus: float | None):
    """``--engine`` and its options -> RayOptions, or None for the local engine; checked."""
    from mldeploy.errors import UsageError

    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine!r}: choose local or ray")
    if engine == "local":
        given = [flag for flag, value in (("--address", address), ("--actors", actors), ("--actor-cpus", actor_cpus)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} needs --engine ray")
        return None
    from mldeploy.rollout.ray_engine import RayOptions, require_ray

    require_ray()
    return RayOptions(address, actors, actor_cpus)


ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model that bare versions belong to.")]
IouOption = Annotated[float, typer.Option("--iou", min=0.05, max=1.0, help="Least IoU for two boxes of the same label to match.")]
DriftIouOption = Annotated[float, typer.Option("--drift-iou", min=0.05, max=1.0,
                                               help="A matched pair under this IoU has drifted: the image disagrees, and --max-drift counts it.")]
PolicyOption = Annotated[Optional[str], typer.Option(
    "--gates", show_default=False, metavar="default|none", rich_help_panel="Gates (exit 3 when one fails)",
    help="The default policy's bounds apply unless a flag or \\[gates] says otherwise; 'none' switches them off "
         "(a run without a quality gate then says REPORT ONLY) \\[default: default].")]
InconclusiveOption = Annotated[Optional[str], typer.Option(
    "--inconclusive", show_default=False, metavar="fail|pass", rich_help_panel="Gates (exit 3 when one fails)",
    help="What a gate with too little evidence means at the end of the run \\[default: fail].")]
ClassesOption = Annotated[Optional[str], typer.Option("--classes", show_default=False, help="Compare only these labels, comma separated.")]
TopOption = Annotated[int, typer.Option("--top", min=0, help="Show the N most disagreeing images.")]
ReportOption = Annotated[Optional[Path], typer.Option("--report", show_default=False, rich_help_panel="Reports",
                                                      help="Write the full result as JSON here: every image (a long replay: its errors and most disagreeing; "
                                                           "every row goes to --records), and a canary's timeline.")]
JunitOption = Annotated[Optional[Path], typer.Option("--junit", show_default=False, rich_help_panel="Reports",
                                                     help="Write JUnit XML here: a test case per gate and per image listed.")]
HtmlOption = Annotated[Optional[Path], typer.Option("--html", show_default=False, rich_help_panel="Reports",
                                                    help="Write an HTML report into this folder: summary and disagreeing images side by side.")]
RecordsOption = Annotated[Optional[Path], typer.Option(
    "--records", metavar="DIR", show_default=False, rich_help_panel="Reports",
    help="Write every image's row into this folder as it finishes (records.jsonl or records.parquet); a long replay's reports list "
         "only its errors and most disagreeing images.")]
class RecordsFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


def records_options(records: Path | None, fmt: RecordsFormat) -> str:
    """``--records-format`` as the writer takes it, checked before any image is listed: Parquet needs pyarrow."""
    if records is not None:
        from mldeploy.report.records import require_format

        require_format(fmt.value)
    return fmt.value


RecordsFormatOption = Annotated[RecordsFormat, typer.Option(
    "--records-format", rich_help_panel="Reports",
    help="Format of --records: JSON lines, or Parquet (needs pyarrow: pip install 'mldeploy\\[s3]').")]
ParallelOption = Annotated[bool, typer.Option(
    "--parallel", help="Run the two versions at the same time on two threads: faster only when a version leaves a core idle "
    "(faces@v2, about 7%); slower for OpenCV models, which already use every core; inflates both latencies.")]


def project(state_dir: Path | None, config: Path | None):
    from mldeploy.project import Project

    return Project(state_dir=state_dir, config_path=config)


def command_line() -> str:
    """The command as the user typed it, for the history's ``command`` column."""
    return shlex.join(["mldeploy", *sys.argv[1:]])


def with_gate_options(func):
    """Add one ``--max-...`` / ``--min-...`` option per gate in :data:`GATES` to a command; the
    command receives them together as ``gate_flags`` (name -> bound or None)."""
    signature = inspect.signature(func, eval_str=True)  # typer reads a __signature__ as it is: no strings
    params = [p for p in signature.parameters.values() if p.name != "gate_flags"]
    for gate in GATES.values():
        default = f" \\[default: {gate.default:g}]" if gate.default is not None else ""
        if gate.truth_default is not None:
            default = f" \\[default with --labels: {gate.truth_default:g}]"
        elif gate.name in AGREEMENT_QUALITY:
            default = f" \\[default: {gate.default:g}; none with --labels]"
        elif gate.truth:
            default = " (needs --labels)"
        unit = " (milliseconds)" if gate.unit == "ms" else " (a share from 0 to 1)" if gate.unit == "%" else ""
        option = typer.Option(gate.flag, show_default=False, rich_help_panel="Gates (exit 3 when one fails)",
                              help=f"{'Upper' if gate.kind == 'max' else 'Lower'} bound on the {gate.what}{unit}{default}.")
        params.append(inspect.Parameter(gate.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], option]))

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        flags = {name: kwargs.pop(name, None) for name in GATES}
        return func(*args, gate_flags=flags, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
