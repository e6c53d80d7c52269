"""``mldeploy detect PATH...``: run one model over files, folders and globs."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, error_line, escape, loading_status, out_console, progress_bar
from mldeploy.cli.options import DEFAULT_MODEL, ConfigOption, StateDirOption, project
from mldeploy.errors import UsageError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def detect(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix, and @MANIFEST (a path or URI a line).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Model as NAME or NAME@VERSION (see 'mldeploy models').")] = DEFAULT_MODEL,
    conf: Annotated[Optional[float], typer.Option("--conf", "-c", min=0.0, max=1.0, help="Confidence threshold \\[default: the model's].")] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Keep only these labels, comma separated (e.g. person,car).")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", "-s", help="Write annotated copies here, mirroring the input folders.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="table for people; json, jsonl or csv on stdout for scripts.")] = OutputFormat.table,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr (for more than one image, when stderr is a terminal).")] = True,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Detect objects in images and print what was found. A bare model name means its live version.

    Exit codes: 0 all images processed, 1 some inputs failed (each is named), 2 usage error,
    4 model cannot be loaded (e.g. weight files missing), 5 the state store cannot be read.
    """
    from mldeploy.models.registry import parse_classes
    from mldeploy.pipeline import AnnotatedImageWriter, DetectionResult, RunSummary, collect_inputs, detect_images

    proj = project(state_dir, config)
    spec = proj.registry().resolve(model)
    labels = parse_classes(classes, spec)
    if save is not None and save.exists() and not save.is_dir():
        raise UsageError(f"--save {save} is a file, not a folder")
    images, unmatched = collect_inputs(paths, exclude=save)
    summary = RunSummary(spec.ref)
    loading = time.perf_counter()
    with loading_status(spec):
        detector = proj.load(spec) if images else None
    summary.load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    results = [DetectionResult(arg, spec.ref, error=error) for arg, error in unmatched]
    if detector is not None:
        writer = AnnotatedImageWriter(save, images) if save is not None else None
        stream = detect_images(images, detector, conf=conf, labels=labels, writer=writer)
        with progress_bar("detect", len(images), progress) as advance:
            for result in stream:
                results.append(result)
                advance()
    summary.wall_seconds = time.perf_counter() - started
    for result in results:
        summary.update(result)

    _emit(results, summary, output)
    saved = [r.saved_to for r in results if r.saved_to is not None]
    if saved:
        err_console.print(f"saved {len(saved)} annotated image{'s' if len(saved) != 1 else ''} to {escape(str(save))}{os.sep}")
    for result in results:
        if not result.ok:
            error_line(f"{escape(result.source)}: {escape(str(result.error))}")
    if summary.failed:
        raise typer.Exit(code=1)


def _emit(results, summary, output: OutputFormat) -> None:
    from mldeploy.report import tables
    from mldeploy.report.serialize import CSV_COLUMNS, result_to_csv_rows, result_to_dict, summary_to_dict

    if output is OutputFormat.json:
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
        return
    err_console.print(tables.run_summary_table(summary))
