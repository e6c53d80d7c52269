"""``mldeploy eval PATH... --labels L``: score a version against ground-truth labels (like ``yolo val``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List

import typer

from mldeploy.cli.console import err_console, error_line, escape, loading_status, out_console, progress_bar, verdict_line
from mldeploy.cli.options import DEFAULT_MODEL, ENGINE, EVAL_GATES, PROJECT, REPORTS, REQUIRED_LABELS, ReportFormat, with_groups


@with_groups
def eval_command(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix, and @MANIFEST (a path or URI a line).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="The version to score: NAME (its live version) or NAME@VERSION.")] = DEFAULT_MODEL,
    project=PROJECT,
    labels=REQUIRED_LABELS,
    engine=ENGINE,
    output=REPORTS,
    gates=EVAL_GATES,
) -> None:
    """Score a version against ground-truth labels: precision, recall, AP@0.5 and mAP@0.5:0.95 (COCO).

    Per label too, with a confusion table and each image's true positives, false positives and misses.
    Images are paired with labels by their path relative to the folder given, else by file name.

    Examples:
        mldeploy eval sample_images/ --labels sample_images/labels/faces.json
        mldeploy eval ./val -m faces@v2 --labels ./val/labels --min-map 0.4 --junit eval.xml

    Exit codes:
        0  every image scored
        1  some images or label entries were skipped (each is named) or could not be read
        2  usage error, or labels that cannot be read
        3  FAIL: --min-map failed
        4  the version cannot be loaded
        5  the state store cannot be read
    """
    from mldeploy.report.evaluation import eval_run_to_dict, eval_tables, write_eval_html, write_eval_json, write_eval_junit
    from mldeploy.rollout.gates import exit_code
    from mldeploy.rollout.runs import run_eval
    from mldeploy.rollout.spec import EvalSpec, Inputs

    spec = EvalSpec(model, labels, Inputs(tuple(paths)), gates, output.files, engine)
    with progress_bar("eval", output.progress) as progress:
        run = run_eval(project, spec, on_listed=progress.start, on_result=progress, loading=loading_status)
    gate_results = run.gates
    if output.format is ReportFormat.json:
        sys.stdout.write(json.dumps(eval_run_to_dict(run, gate_results), indent=2) + "\n")
    else:
        console = out_console()
        for table in eval_tables(run, output.top, gate_results):
            console.print(table)
    protect = [Path(r.source) for r in run.results]
    files = output.files
    for path, writer in ((files.json, write_eval_json), (files.junit, write_eval_junit), (files.html, write_eval_html)):
        if path is not None:
            err_console.print(f"wrote {escape(str(writer(path, run, gate_results, protect)))}")
    for problem in run.problems[:20]:
        error_line(escape(f"{problem.kind}: {problem}"))
    if len(run.problems) > 20:
        error_line(f"... and {len(run.problems) - 20} more problems (all of them in --report or --format json)")
    for result in run.failed:
        error_line(f"{escape(result.source)}: {escape(str(result.error))}")
    for arg, err in run.unmatched:
        error_line(f"{escape(arg)}: {escape(str(err))}")
    e, v = run.evaluation, run.verdict
    for g in v.deciding if not v.ok else ():
        error_line(f"gate failed: {escape(g.message)}")
    headline = v.headline if run.gates else "REPORT ONLY: no gate given (--min-map)"
    load = f"load {run.load_seconds:.1f} s, " if run.load_seconds else ""
    verdict_line(f"{headline} ({e.model}: mAP@0.5:0.95 {_f(e.map)}, mAP@0.5 {_f(e.map50)}, precision {_f(e.precision)}, "
                 f"recall {_f(e.recall)} on {len(e.images)} images, {load}run {run.wall_seconds:.1f} s)")
    code = exit_code(run)
    if code:
        raise typer.Exit(code)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
