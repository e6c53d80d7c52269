"""``mldeploy eval PATH... --labels L``: score a version against ground-truth labels (like ``yolo val``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, error_line, escape, out_console, progress_bar
from mldeploy.cli.options import (
    DEFAULT_MODEL, ActorCpusOption, ActorsOption, AddressOption, ConfigOption, EngineOption, HtmlOption, JunitOption, LabelMapOption, NamesOption,
    ReportOption, StateDirOption, TopOption, project, ray_options,
)
from mldeploy.cli.reporting import ReportFormat
from mldeploy.errors import EXIT_GATE_FAILED, OutputError, UsageError


def eval_command(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix, and @MANIFEST (a path or URI a line).", show_default=False)],
    labels: Annotated[Path, typer.Option("--labels", metavar="FILE|DIR", show_default=False,
                                         help="Ground truth: a COCO .json, a YOLO data.yaml or folder of .txt, or a folder of Pascal VOC .xml.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The version to score: NAME (its live version) or NAME@VERSION.")] = DEFAULT_MODEL,
    label_map: LabelMapOption = None,
    names: NamesOption = None,
    min_map: Annotated[Optional[float], typer.Option("--min-map", min=0, max=1, show_default=False,
                                                     help="Exit 3 when mAP@0.5:0.95 is under this (a share from 0 to 1).")] = None,
    top: TopOption = 10,
    output: Annotated[ReportFormat, typer.Option("--format", "-f", help="table for people; json prints the full result on stdout.")] = ReportFormat.table,
    report: ReportOption = None,
    junit: JunitOption = None,
    html: HtmlOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    actors: ActorsOption = None,
    actor_cpus: ActorCpusOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr (when it is a terminal).")] = True,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Score a version against ground-truth labels: precision, recall, AP@0.5 and mAP@0.5:0.95 (COCO),
    per label, a confusion table and each image's true positives, false positives and misses.

    Images are paired with labels by their path relative to the folder given, else by file name.

    Exit codes: 0 every image scored, 1 some images or labels were skipped (each named) or could not be
    read, 2 usage error or labels that cannot be read, 3 --min-map failed, 4 the version cannot be loaded.
    """
    from mldeploy.fileio import check_destinations
    from mldeploy.pipeline import collect_inputs
    from mldeploy.report.evaluation import eval_run_to_dict, eval_tables, write_eval_html, write_eval_json, write_eval_junit
    from mldeploy.rollout.gates import GateResult, evaluate
    from mldeploy.truth.evaluate import TruthScores
    from mldeploy.truth.run import run_eval

    collected = collect_inputs(paths)
    try:  # before the run, as shadow does: a report that cannot be written must not cost the run
        check_destinations((report, junit), ((html, "--html"),), (item.path for item in collected[0] if item.uri is None))
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    ray = ray_options(engine, address, actors, actor_cpus)
    proj = project(state_dir, config)
    detect = None
    if ray is not None:
        from mldeploy.rollout.ray_engine import detect_ray, session

        def detect(images, spec, on_image):
            with session(ray):
                return detect_ray(images, proj, spec.ref, options=ray, on_image=on_image)

    with progress_bar("eval", len(collected[0]), progress) as advance:
        run = run_eval(proj, paths, labels, model=model, label_map=label_map, names=names, on_image=advance, detect=detect, collected=collected)
    if ray is not None:
        run.settings.update(engine="ray", address=ray.address or "local")
    gates: list[GateResult] = []
    if min_map is not None:
        gates = evaluate(_Scores(TruthScores(new=run.evaluation)), {"min_map": min_map})
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(eval_run_to_dict(run, gates), indent=2) + "\n")
    else:
        console = out_console()
        for table in eval_tables(run, top, gates):
            console.print(table)
    protect = [Path(r.source) for r in run.results]
    for path, writer in ((report, write_eval_json), (junit, write_eval_junit), (html, write_eval_html)):
        if path is not None:
            err_console.print(f"wrote {escape(str(writer(path, run, gates, protect)))}")
    for problem in run.problems[:20]:
        error_line(escape(f"{problem.kind}: {problem}"))
    if len(run.problems) > 20:
        error_line(f"... and {len(run.problems) - 20} more problems (all of them in --report or --format json)")
    for result in run.failed:
        error_line(f"{escape(result.source)}: {escape(str(result.error))}")
    for arg, err in run.unmatched:
        error_line(f"{escape(arg)}: {escape(str(err))}")
    e = run.evaluation
    line = (f"{escape(e.model)}: mAP@0.5:0.95 {_f(e.map)}, mAP@0.5 {_f(e.map50)}, precision {_f(e.precision)}, recall {_f(e.recall)} "
            f"on {len(e.images)} images ({run.wall_seconds:.1f} s)")
    failed = [g for g in gates if g.failed]
    for g in failed:
        error_line(f"gate failed: {escape(g.message)}")
    if failed:
        err_console.print(f"[bold red]FAIL[/] {line}")
        raise typer.Exit(EXIT_GATE_FAILED)
    err_console.print(f"[bold]{line}[/]")
    if not run.complete:
        raise typer.Exit(1)


class _Scores:
    """What the truth gates read (``.truth``), for one evaluated version."""

    def __init__(self, truth) -> None:
        self.truth = truth


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
