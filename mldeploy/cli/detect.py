"""``mldeploy detect PATH...``: run one model over files, folders and globs."""

from __future__ import annotations

import csv
import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from mldeploy.cli.console import err_console, error_boundary, error_line, escape, out_console, progress_bar
from mldeploy.cli.options import ConfigOption, StateDirOption, parse_classes, project
from mldeploy.errors import UsageError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def detect(
    paths: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) and glob patterns.", show_default=False),
    model: str = typer.Option("faces", "--model", "-m", help="Model as NAME or NAME@VERSION (see 'mldeploy models')."),
    conf: Optional[float] = typer.Option(None, "--conf", "-c", min=0.0, max=1.0, help="Confidence threshold \\[default: the model's]."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Keep only these labels, comma separated (e.g. person,car)."),
    save: Optional[Path] = typer.Option(None, "--save", "-s", help="Write annotated copies here, mirroring the input folders."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table for people; json, jsonl or csv on stdout for scripts."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr (for more than one image, when stderr is a terminal)."),
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Detect objects in images and print what was found. A bare model name means its live version.

    Exit codes: 0 all images processed, 1 some inputs failed (each is named), 2 usage error,
    4 model cannot be loaded (e.g. weight files missing).
    """
    with error_boundary():
        from mldeploy.pipeline import AnnotatedImageWriter, DetectionResult, RunSummary, collect_inputs, detect_images

        proj = project(state_dir, config)
        spec = proj.registry().resolve(model)
        labels = parse_classes(classes, spec)
        if save is not None and save.exists() and not save.is_dir():
            raise UsageError(f"--save {save} is a file, not a folder")
        images, unmatched = collect_inputs(paths, exclude=save)
        detector = proj.load(spec) if images else None

        summary = RunSummary(spec.ref)
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
        for result in results:
            if not result.ok:
                error_line(f"{escape(result.source)}: {escape(str(result.error))}")
        if summary.failed:
            raise typer.Exit(code=1)


def _emit(results, summary, output: OutputFormat) -> None:
    from mldeploy.serialize import CSV_COLUMNS, result_to_csv_rows, result_to_dict, summary_to_dict

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
            console.print(_detections_table(ok[0]))
        elif ok:
            console.print(_images_table(ok))
        console.print(_summary_table(summary))
        return
    if output is not OutputFormat.table:
        err_console.print(_summary_table(summary))


def _detections_table(result):
    from rich.table import Table

    dets = result.detections
    table = Table(title=f"{result.source}: {len(dets)} found by {result.model}", title_justify="left")
    for column, justify in (("#", "right"), ("label", "left"), ("confidence", "right"), ("box x1, y1, x2, y2", "left")):
        table.add_column(column, justify=justify)
    for i, (box, score, label) in enumerate(zip(dets.xyxy, dets.confidence, dets.label), 1):
        table.add_row(str(i), escape(str(label)), f"{score:.3f}", ", ".join(f"{v:.0f}" for v in box))
    if result.saved_to:
        table.caption = f"saved to {result.saved_to}"
    return table


def _images_table(results):
    from rich.table import Table

    table = Table(title=f"{len(results)} images, {results[0].model}", title_justify="left")
    for column, justify in (("image", "left"), ("found", "right"), ("labels", "left"), ("ms", "right")):
        table.add_column(column, justify=justify)
    for result in results:
        counts = ", ".join(f"{escape(str(k))} x{v}" for k, v in result.detections.counts().items())
        table.add_row(escape(result.source), str(len(result.detections)), counts, f"{result.seconds * 1000:.0f}")
    return table


def _summary_table(summary):
    from rich.table import Table

    table = Table(title="summary", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("model", summary.model)
    table.add_row("images", str(summary.images))
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("detections", str(summary.detections))
    for label, count in summary.per_label.most_common():
        table.add_row(f"  {escape(str(label))}", str(count))
    table.add_row("time", f"{summary.wall_seconds:.2f} s ({summary.images_per_second:.1f} images/s)")
    return table
