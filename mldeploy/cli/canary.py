"""``mldeploy canary --old v1 --new v2 PATH... --steps 5,25,50,100``: a rehearsed canary rollout."""

from __future__ import annotations

from typing import List, Optional

import typer

from mldeploy.cli.console import err_console, error_boundary, escape
from mldeploy.cli.options import (
    ClassesOption, ConfigOption, HtmlOption, IouOption, JunitOption, ModelOption, ParallelOption, ReportOption, StateDirOption, TopOption,
    command_line, with_gate_options,
)
from mldeploy.cli.shadow import ReportFormat, finish, prepare, settings_of


@with_gate_options
def canary(
    paths: List[str] = typer.Argument(..., help="Image files, folders and glob patterns: the traffic to replay.", show_default=False),
    new: str = typer.Option(..., "--new", help="The canary: a version of --model (v2) or NAME@VERSION.", show_default=False),
    old: Optional[str] = typer.Option(None, "--old", help="The stable version \\[default: the live version of --model].", show_default=False),
    model: ModelOption = "faces",
    steps: str = typer.Option("5,25,50,100", "--steps", help="Percentages of traffic sent to the canary, in order."),
    salt: str = typer.Option("", "--salt", help="Changes which images the router picks first (the same salt routes the same way)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Rehearse only: change no live version, write no history."),
    iou: IouOption = 0.5,
    classes: ClassesOption = None,
    top: TopOption = 10,
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", "-f", help="table for people; json prints the full result on stdout."),
    report: ReportOption = None,
    junit: JunitOption = None,
    html: HtmlOption = None,
    parallel: ParallelOption = False,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    gate_flags: dict = None,
) -> None:
    """Send a growing share of the images to the new version, checking the gates at every step.

    Routing is sticky per image and the same on every run. The first failing step rolls back: the old
    version stays (or becomes again) live and the history says why; exit 3. When every step passes the
    new version is promoted, unless --dry-run.

    Exit codes: 0 promoted (or would be, with --dry-run), 3 rolled back, 1 some images could not be
    read, 2 usage error, 4 a version cannot be loaded.
    """
    with error_boundary():
        from mldeploy.errors import UsageError
        from mldeploy.reports import Report
        from mldeploy.serialize import canary_step_to_dict
        from mldeploy.rollout.canary import parse_steps, run_canary
        from mldeploy.rollout.releases import promote

        shares = parse_steps(steps)
        r = prepare(paths, old, new, model, classes, gate_flags, state_dir, config, (report, junit), html)
        if r.old_spec.name != r.new_spec.name and not dry_run:
            raise UsageError(f"{r.old_spec.ref} and {r.new_spec.ref} are different models: only a --dry-run can compare them")
        if r.old_spec.ref == r.new_spec.ref:
            raise UsageError(f"--old and --new are both {r.old_spec.ref}: nothing to roll out")
        workers = 2 if parallel else 1

        def show_step(step) -> None:
            err_console.print(f"step {step.share:g}%: {step.canary_requests} canary requests, {step.verdict}")

        run = run_canary(r.images, r.old, r.new, shares, r.bounds, iou_threshold=iou, labels=r.labels, salt=salt, workers=workers,
                         on_step=show_step if err_console.is_terminal else None)
        evaluated = [s for s in run.steps if s.summary is not None]
        if not evaluated:
            raise UsageError(f"no step sent any image to the canary ({len(r.images)} images, steps {steps}); add a step of 100 or more images")
        last = run.failed_step or evaluated[-1]
        timeline = [canary_step_to_dict(s) for s in run.steps]
        settings = settings_of(r, iou, steps=list(shares), salt=salt, dry_run=dry_run, workers=workers)
        doc = Report("canary", run.records, last.summary, last.gates, settings, {"timeline": timeline, "promoted": False})

        if run.passed:
            action, target, reason = "canary-promote", r.new_spec, f"canary passed every step ({steps}) on {len(run.records)} requests"
        else:
            action, target, reason = "canary-rollback", r.old_spec, run.failure_reason()
        if dry_run:
            err_console.print(f"dry run: would {'promote ' + escape(target.ref) if run.passed else 'roll back to ' + escape(target.ref)}; nothing changed")
        else:
            change = promote(r.project, target, reason=reason, command=command_line(), force=True, action=action)
            doc.extra["promoted"] = run.passed
            if run.passed:
                what = f"[green]promoted[/] {escape(change.model)}: {escape(change.from_version)} -> [bold]{escape(change.to_version)}[/]"
            elif change.from_version == change.to_version:
                what = f"[yellow]rolled back[/]: {escape(target.ref)} stays live"
            else:
                what = f"[yellow]rolled back[/] {escape(change.model)}: {escape(change.from_version)} -> [bold]{escape(change.to_version)}[/]"
            err_console.print(f"{what} (history #{change.id}): {escape(reason)}")
        finish(doc, r, output, report, junit, html, top, run.wall_seconds, tables_before=[_timeline_table(run)])


def _timeline_table(run):
    from rich.table import Table

    table = Table(title=f"canary: {escape(run.old)} -> {escape(run.new)}", title_justify="left")
    for column in ("step", "share", "requests", "to canary", "disagreement", "recall", "errors", "p50 old / new (ms)", "verdict"):
        table.add_column(column, justify="left" if column in ("verdict",) else "right")
    styles = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "no traffic": "[dim]no traffic[/]", "not run": "[dim]not run[/]"}
    for n, step in enumerate(run.steps, 1):
        s = step.summary
        if s is None:
            cells = ["", "", "", ""]
        else:
            latency = " / ".join("n/a" if v is None else f"{v * 1000:.1f}" for v in (s.old_latency.p50, s.new_latency.p50))
            cells = [f"{s.agreement.disagreement * 100:.1f}%", f"{s.agreement.recall:.3f}", str(s.new_errors), latency]
        requests = str(step.requests) if step.verdict != "not run" else ""
        to_canary = str(step.canary_requests) if step.verdict != "not run" else ""
        verdict = styles[step.verdict] + ("" if not step.failed_gates else ": " + escape("; ".join(g.message for g in step.failed_gates)))
        table.add_row(str(n), f"{step.share:g}%", requests, to_canary, *cells, verdict)
    return table
