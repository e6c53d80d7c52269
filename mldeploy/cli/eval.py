"""``mldeploy eval PATH... --labels L``: score a version against ground-truth labels (like ``yolo val``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, error_line, escape, loading_status, out_console, progress_bar, verdict_line
from mldeploy.cli.options import DEFAULT_MODEL, ENGINE, EVAL_GATES, EVAL_LABELS, PROJECT, REPORTS, ReportFormat, with_groups


@with_groups
def eval_command(
    paths: Annotated[Optional[List[str]], typer.Argument(metavar="PATH", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix, and @MANIFEST (a path or URI a line).", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="The version to score: NAME (its live version) or NAME@VERSION.")] = DEFAULT_MODEL,
    capture: Annotated[Optional[Path], typer.Option("--capture", metavar="DIR", show_default=False, rich_help_panel="Real traffic",
                                                    help="Score a server's capture instead: its requests that have labels ('capture label'), "
                                                         "the answers the server gave, per version that gave them.")] = None,
    run: Annotated[Optional[List[str]], typer.Option("--run", metavar="VERSION", show_default=False, rich_help_panel="Real traffic",
                                                     help="With --capture: also run this version of --model on the labelled captured images (repeat).")] = None,
    window: Annotated[Optional[str], typer.Option("--window", metavar="DURATION", show_default=False, rich_help_panel="Real traffic",
                                                  help="With --capture: score each window of this length apart (12h, 1d, 1w) \[default: the whole capture].")] = None,
    project=PROJECT,
    labels=EVAL_LABELS,
    engine=ENGINE,
    output=REPORTS,
    gates=EVAL_GATES,
) -> None:
    """Score a version against ground-truth labels: precision, recall, AP@0.5 and mAP@0.5:0.95 (COCO).

    Per label too, with a confusion table and each image's true positives, false positives and misses.
    Images are paired with labels by their path relative to the folder given, else by file name.

    With --capture, the labels are those attached to a capture ('mldeploy capture label'): the answers
    the server gave are scored per version and per --window, and each --run version is run here on the
    same images.

    Examples:
        mldeploy eval sample_images/ --labels sample_images/labels/faces.json
        mldeploy eval ./val -m faces@v2 --labels ./val/labels --min-map 0.4 --junit eval.xml
        mldeploy eval --capture ./capture -m faces --run v2 --window 1d

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
    from mldeploy.errors import UsageError
    from mldeploy.rollout.spec import EvalSpec, Inputs

    if capture is not None:
        if paths:
            raise UsageError("give images or --capture, not both")
        if labels.path is not None:
            raise UsageError("--capture scores the labels attached to the capture: attach a file with 'mldeploy capture label' first")
        return _eval_capture(project, capture, model, run or [], window, labels.label_map, engine, output)
    if run or window:
        raise UsageError(f"{'--run' if run else '--window'} goes with --capture DIR")
    if not paths:
        raise UsageError("no images: give image files or folders (or --capture DIR)")
    if labels.path is None:
        raise UsageError("Missing option '--labels': eval scores against ground truth")
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


def _eval_capture(project, folder: Path, model: str, run: list[str], window: str | None, label_map: str | None, engine, output) -> None:
    """``eval --capture``: the table (or JSON) of every version and window, and a REPORT ONLY line."""
    from mldeploy.cli.capture import parse_age
    from mldeploy.errors import UsageError
    from mldeploy.report.feedback import capture_scores_table
    from mldeploy.rollout.feedback import score_capture

    if "@" in model:
        model, _, pinned = model.partition("@")
        run = [pinned, *run]
    window_s = parse_age(window, "--window") if window is not None else None
    if window_s is not None and window_s <= 0:
        raise UsageError(f"--window {window}: must be longer than nothing")
    with progress_bar("eval", output.progress) as progress:
        scores = score_capture(project, folder, model, run, window_s=window_s, label_map=label_map, engine=engine.make(project),
                               on_listed=progress.start, on_result=progress)
    if output.format is ReportFormat.json:
        sys.stdout.write(json.dumps(scores.to_dict(), indent=2) + "\n")
    else:
        out_console().print(capture_scores_table(scores))
    if output.files.json is not None:
        from mldeploy.fileio import atomic_write

        err_console.print(f"wrote {escape(str(atomic_write(output.files.json, json.dumps(scores.to_dict(), indent=2).encode())))}")
    for problem in scores.problems[:20]:
        error_line(escape(f"{problem.kind}: {problem}"))
    verdict_line(f"REPORT ONLY: {scores.labelled} of {scores.requests} captured {model} requests have labels; "
                 + "; ".join(f"{r.version} ({r.answers}{', ' + r.window[:10] if r.window else ''}) mAP {_f(r.evaluation.map)}, "
                             f"recall {_f(r.evaluation.recall)} on {r.requests}" for r in scores.rows[:6])
                 + (f"; ... {len(scores.rows) - 6} more rows" if len(scores.rows) > 6 else "")
                 + f" (run {scores.wall_seconds:.1f} s)")
    if scores.problems:
        raise typer.Exit(1)
