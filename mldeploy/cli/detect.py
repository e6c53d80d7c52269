"""``mldeploy detect PATH...``: run one model over files, folders and globs."""

from __future__ import annotations

import csv
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, error_line, escape, loading_status, out_console, progress_bar
from mldeploy.cli.options import DEFAULT_MODEL, ENGINE, PROJECT, with_groups


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    coco = "coco"


@with_groups
def detect(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix, and @MANIFEST (a path or URI a line).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Model as NAME or NAME@VERSION (see 'mldeploy models').")] = DEFAULT_MODEL,
    conf: Annotated[Optional[float], typer.Option("--conf", "-c", min=0.0, max=1.0, help="Confidence threshold \\[default: the model's].")] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Keep only these labels, comma separated (e.g. person,car).")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", "-s", help="Write annotated copies here, mirroring the input folders.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="table for people; json, jsonl or csv on stdout for scripts; coco: a COCO results array.")] = OutputFormat.table,
    labels: Annotated[Optional[Path], typer.Option("--labels", metavar="FILE", show_default=False,
                                                   help="With --format coco: a COCO .json whose image and category ids the results use (so COCO tools score them against it).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr (for more than one image, when stderr is a terminal).")] = True,
    project=PROJECT,
    engine=ENGINE,
) -> None:
    """Detect objects in images and print what was found. A bare model name means its live version.

    Examples:
        mldeploy detect sample_images/
        mldeploy detect photo.jpg -m people --save annotated/
        mldeploy detect ./imgs -m faces@v2 --format jsonl > detections.jsonl
        mldeploy detect sample_images/ --format coco --labels sample_images/labels/faces.json > results.json

    Exit codes:
        0  every image processed
        1  some inputs failed (each is named), or --format coco left some out (each is named)
        2  usage error
        4  the model cannot be loaded (e.g. weight files missing)
        5  the state store cannot be read
    """
    from mldeploy.rollout.gates import exit_code
    from mldeploy.rollout.runs import run_detect
    from mldeploy.rollout.spec import DetectSpec, Inputs

    from mldeploy.errors import UsageError

    ids = None
    if labels is not None:
        if output is not OutputFormat.coco:
            raise UsageError("--labels gives COCO ids to --format coco (to score against labels: mldeploy eval)")
        from mldeploy.truth.labels import coco_ids

        ids = coco_ids(labels)  # read before anything runs: a bad file is one line, exit 2
    spec = DetectSpec(model, Inputs(tuple(paths)), conf, classes, save, engine)
    with progress_bar("detect", progress) as bar:
        run = run_detect(project, spec, on_listed=bar.start, on_result=bar, loading=loading_status)
    left_out = _emit(run.results, run.summary, output, ids, project.registry().resolve(model).classes)
    if run.saved:
        n = len(run.saved)
        err_console.print(f"saved {n} annotated image{'s' if n != 1 else ''} to {escape(str(save))}{os.sep}")
    for result in run.results:
        if not result.ok:
            error_line(f"{escape(result.source)}: {escape(str(result.error))}")
    for line in left_out:
        error_line(escape(f"left out of the COCO results: {line}"))
    if exit_code(run) or left_out:
        raise typer.Exit(code=exit_code(run) or 1)


def _emit(results, summary, output: OutputFormat, ids=None, classes=()) -> list[str]:
    from mldeploy.report import tables
    from mldeploy.report.serialize import CSV_COLUMNS, result_to_csv_rows, result_to_dict, results_to_coco, summary_to_dict

    left_out: list[str] = []
    if output is OutputFormat.coco:
        array, left_out = results_to_coco(results, classes, *(ids if ids is not None else (None, None)))
        sys.stdout.write(json.dumps(array) + "\n")
    elif output is OutputFormat.json:
        doc = {"model": summary.model, "results": [result_to_dict(r) for r in results], "summary": summary_to_dict(summary)}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif output is OutputFormat.jsonl:
        for result in results:
            sys.stdout.write(json.dumps(result_to_dict(result)) + "\n")
    elif output is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in results:
            writer.writerows(result_to_csv_rows(result))
    else:
        console = out_console()
        ok = [r for r in results if r.ok]
        if len(results) == 1 and ok:
            console.print(tables.detections_table(ok[0]))
        elif ok:
            console.print(tables.images_table(ok))
        console.print(tables.run_summary_table(summary))
        return left_out
    err_console.print(tables.run_summary_table(summary))
    return left_out
