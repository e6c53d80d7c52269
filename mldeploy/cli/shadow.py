"""``mldeploy shadow --old v1 --new v2 PATH...``: replay images through two versions and compare."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from mldeploy.cli.console import err_console, error_boundary, error_line, escape, out_console, progress_bar
from mldeploy.cli.options import (
    ClassesOption, ConfigOption, HtmlOption, IouOption, JunitOption, ModelOption, ParallelOption, ReportOption, StateDirOption, TopOption,
    parse_classes, project, with_gate_options,
)

EXIT_GATE_FAILED = 3


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


@dataclass
class Rehearsal:
    """What shadow and canary set up the same way before replaying."""

    project: Any
    old_spec: Any
    new_spec: Any
    images: list
    unmatched: list
    labels: list | None
    bounds: dict

    @property
    def old(self):
        return self.project.load(self.old_spec)  # pins checked; loaded once per process, on first use

    @property
    def new(self):
        return self.project.load(self.new_spec)


def prepare(paths, old, new, model, classes, gate_flags, state_dir, config, outputs=(), html=None) -> Rehearsal:
    """Resolve versions, images, labels and gate bounds (the versions load when first used).

    An HTML report folder inside an image folder is skipped when collecting images, so a rerun does
    not replay the previous report's pictures.
    """
    from mldeploy.errors import UsageError
    from mldeploy.pipeline import collect_inputs
    from mldeploy.rollout.gates import resolve_bounds
    from mldeploy.rollout.releases import resolve_version

    proj = project(state_dir, config)
    registry = proj.registry()
    old_spec = resolve_version(registry, old or model, model)
    new_spec = resolve_version(registry, new, model)
    labels = parse_classes(classes, old_spec, new_spec)
    bounds = resolve_bounds(gate_flags, proj.gate_defaults())
    images, unmatched = collect_inputs(paths, exclude=html)
    outputs = [Path(p) for p in outputs if p is not None]
    if not images:
        raise UsageError("no images to replay: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
    inputs = {item.path.resolve() for item in images}
    for target in outputs:
        if target.resolve() in inputs:
            raise UsageError(f"refusing to write a report over input image {target}")
    return Rehearsal(proj, old_spec, new_spec, images, unmatched, labels, bounds)


@with_gate_options
def shadow(
    paths: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) and glob patterns.", show_default=False),
    new: str = typer.Option(..., "--new", help="The candidate: a version of --model (v2) or NAME@VERSION.", show_default=False),
    old: Optional[str] = typer.Option(None, "--old", help="The reference \\[default: the live version of --model].", show_default=False),
    model: ModelOption = "faces",
    iou: IouOption = 0.5,
    classes: ClassesOption = None,
    top: TopOption = 10,
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", "-f", help="table for people; json prints the full result on stdout."),
    report: ReportOption = None,
    junit: JunitOption = None,
    html: HtmlOption = None,
    parallel: ParallelOption = False,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr (when it is a terminal)."),
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    gate_flags: dict = None,
) -> None:
    """Run two versions on the same images and report where they disagree (the old one is the reference).

    Exit codes: 0 all gates pass, 3 a gate failed (each failure is named with its figure and bound),
    1 some images could not be read or the old version failed on them, 2 usage error, 4 a version cannot be loaded.
    """
    with error_boundary():
        from mldeploy.reports import Report
        from mldeploy.rollout.gates import evaluate
        from mldeploy.rollout.shadow import run_shadow

        r = prepare(paths, old, new, model, classes, gate_flags, state_dir, config, (report, junit), html)
        with progress_bar("shadow", len(r.images), progress) as advance:
            run = run_shadow(r.images, r.old, r.new, iou_threshold=iou, labels=r.labels, workers=2 if parallel else 1, on_record=advance)
        gates = evaluate(run.summary, r.bounds)
        doc = Report("shadow", run.records, run.summary, gates, settings_of(r, iou, workers=2 if parallel else 1))
        finish(doc, r, output, report, junit, html, top, wall_seconds=run.wall_seconds)


def settings_of(r: Rehearsal, iou: float, **extra) -> dict[str, Any]:
    return {"old": r.old_spec.ref, "new": r.new_spec.ref, "iou": iou, "classes": r.labels, **extra}


def finish(doc, r: Rehearsal, output: ReportFormat, report, junit, html, top: int, wall_seconds: float, tables_before=()) -> None:
    """Print, write the reports, name each failure, and exit with the code a CI job gates on."""
    from mldeploy.reports import write_html, write_json, write_junit

    protect = [item.path for item in r.images]
    doc.extra["unmatched_inputs"] = [{"input": arg, "error": str(err)} for arg, err in r.unmatched]
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(doc.to_dict(), indent=2) + "\n")
    else:
        console = out_console()
        for table in tables_before:
            console.print(table)
        for table in render(doc, top):
            console.print(table)
    written = []
    if report is not None:
        written.append(write_json(report, doc, protect))
    if junit is not None:
        written.append(write_junit(junit, doc, protect))
    if html is not None:
        written.append(write_html(html, doc, protect))
    for path in written:
        err_console.print(f"wrote {escape(str(path))}")

    for arg, err in r.unmatched:
        error_line(f"{escape(arg)}: {escape(str(err))}")
    for record in doc.records:
        if record.input_error is not None:
            error_line(f"{escape(record.source)}: {escape(str(record.input_error))}")
        else:
            for side in (record.old, record.new):
                if not side.ok:
                    error_line(f"{escape(record.source)}: {escape(str(side.error))}")
    failed = [g for g in doc.gates if not g.passed]
    for g in failed:
        error_line(f"gate failed: {escape(g.message)}")
    s = doc.summary
    if failed:
        err_console.print(f"[bold red]FAIL[/]: {len(failed)} of {len(doc.gates)} gates failed ({s.old} -> {s.new}, {wall_seconds:.1f} s)")
        raise typer.Exit(EXIT_GATE_FAILED)
    err_console.print(f"[bold green]PASS[/]: all {len(doc.gates)} gates passed ({s.old} -> {s.new}, {s.compared} images compared, {wall_seconds:.1f} s)")
    if r.unmatched or s.unreadable or s.old_errors:
        raise typer.Exit(1)


def render(doc, top: int) -> list:
    """Rich tables: summary, per label, the most disagreeing images, errors, gates."""
    from rich.table import Table

    from mldeploy.rollout.shadow import most_disagreeing

    s, a = doc.summary, doc.summary.agreement
    ms = lambda v: "n/a" if v is None else f"{v * 1000:.1f}"  # noqa: E731
    ratio = lambda v: "n/a" if v is None else f"{v:.2f}x"  # noqa: E731
    tables = []

    scope = "shadow" if doc.kind == "shadow" else "canary requests"
    summary = Table(title=f"{scope}: {escape(s.old)} (old) vs {escape(s.new)} (new), IoU >= {s.iou_threshold:g}", title_justify="left")
    for column, justify in (("", "left"), ("old", "right"), ("new", "right"), ("new / old", "right")):
        summary.add_column(column, justify=justify)
    summary.add_row("images answered", str(s.images - s.unreadable - s.old_errors), str(s.images - s.unreadable - s.new_errors), "")
    summary.add_row("errors", _red(s.old_errors), _red(s.new_errors), "")
    summary.add_row("boxes", str(a.old_boxes), str(a.new_boxes), f"{a.new_boxes - a.old_boxes:+d}")
    summary.add_row("latency p50 (ms)", ms(s.old_latency.p50), ms(s.new_latency.p50), ratio(s.latency_ratio))
    summary.add_row("latency p95 (ms)", ms(s.old_latency.p95), ms(s.new_latency.p95), ratio(s.p95_ratio))
    summary.add_section()
    summary.add_row("compared images", "", str(s.compared), "")
    summary.add_row("images with disagreement", "", f"{a.disagreeing_images} ({a.disagreement * 100:.1f}%)", "")
    summary.add_row("boxes matched / missing / extra / relabelled", "", f"{a.matched} / {a.missing} / {a.extra} / {a.relabelled}", "")
    summary.add_row("precision / recall / F1", "", f"{a.precision:.3f} / {a.recall:.3f} / {a.f1:.3f}", "")
    summary.add_row("mean IoU of matches", "", "n/a" if a.mean_iou is None else f"{a.mean_iou:.3f}", "")
    if s.unreadable:
        summary.add_row("unreadable images", "", _red(s.unreadable), "")
    tables.append(summary)

    if a.per_label:
        labels = Table(title="per label", title_justify="left")
        for column in ("label", "old", "new", "change", "matched", "missing", "extra", "relabelled", "recall", "precision"):
            labels.add_column(column, justify="left" if column == "label" else "right")
        for label, x in a.per_label.items():
            change = f"[red]{x.count_change:+d}[/]" if x.count_change else "0"
            labels.add_row(escape(label), str(x.old), str(x.new), change, str(x.matched), str(x.missing), str(x.extra), str(x.relabelled),
                           f"{x.recall:.3f}", f"{x.precision:.3f}")
        tables.append(labels)

    worst = most_disagreeing(doc.records, top)
    if worst:
        images = Table(title=f"most disagreeing images ({len(worst)} of {a.disagreeing_images})", title_justify="left")
        for column in ("image", "old", "new", "matched", "missing", "extra", "relabelled", "mean IoU"):
            images.add_column(column, justify="left" if column == "image" else "right", overflow="fold")
        for rec in worst:
            c = rec.comparison
            images.add_row(escape(rec.source), str(len(c.old)), str(len(c.new)), str(len(c.matched)), _red(len(c.missing)), _red(len(c.extra)),
                           _red(len(c.relabelled)), "n/a" if c.mean_iou is None else f"{c.mean_iou:.3f}")
        tables.append(images)

    if doc.gates:
        gates = Table(title="gates", title_justify="left")
        for column, justify in (("gate", "left"), ("value", "right"), ("bound", "right"), ("result", "left")):
            gates.add_column(column, justify=justify)
        for g in doc.gates:
            gates.add_row(g.gate.flag, g.gate.show(g.value), g.bound_text, "[green]pass[/]" if g.passed else "[bold red]FAIL[/]")
        tables.append(gates)
    return tables


def _red(n: int) -> str:
    return f"[red]{n}[/]" if n else "0"
