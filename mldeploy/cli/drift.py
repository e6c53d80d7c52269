"""``mldeploy drift``: how the distribution of a model's answers moved, between two versions on the same
images or between two time windows of a capture (library: :mod:`mldeploy.rollout.drift`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, escape, out_console, progress_bar, verdict_line
from mldeploy.cli.options import DEFAULT_MODEL, ENGINE, PROJECT, ProgressOption, ReportFormat, with_groups


@with_groups
def drift(
    paths: Annotated[Optional[List[str]], typer.Argument(metavar="PATH", show_default=False, help="Images both versions answer (files, folders, globs, @MANIFEST).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="The model.")] = DEFAULT_MODEL,
    new: Annotated[Optional[str], typer.Option("--new", metavar="VERSION", show_default=False,
                                               help="Compare this version's answers with --old's on the same images \\[default: compare two windows of --capture].")] = None,
    old: Annotated[Optional[str], typer.Option("--old", metavar="VERSION", show_default=False,
                                               help="The reference version \\[default: the live one; with --capture, the version that answered].")] = None,
    capture: Annotated[Optional[Path], typer.Option("--capture", metavar="DIR", show_default=False, rich_help_panel="Capture",
                                                    help="A server's capture: its images (with --new), or its recorded answers and inputs in two windows.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", metavar="START..END", show_default=False, rich_help_panel="Capture",
                                                     help="The reference window (ISO dates or times, UTC; an end may be left out) \\[default: the older half].")] = None,
    current: Annotated[Optional[str], typer.Option("--current", metavar="START..END", show_default=False, rich_help_panel="Capture",
                                                   help="The window compared with it \\[default: the newer half].")] = None,
    max_psi: Annotated[float, typer.Option("--max-psi", metavar="NUMBER", help="Fail when an output feature's PSI is above this (0.1: moderate, 0.25: major).")] = 0.25,
    output: Annotated[ReportFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")] = ReportFormat.table,
    report: Annotated[Optional[Path], typer.Option("--report", metavar="FILE", show_default=False, help="Also write the JSON here.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="DIR", show_default=False, help="Write a page of overlaid histograms here (needs the bench extra: matplotlib).")] = None,
    progress: ProgressOption = True,
    project=PROJECT,
    engine=ENGINE,
) -> None:
    """Compare the distributions of detection outputs: boxes per image, class mix, confidence, box area
    and aspect, with the population stability index (PSI) of each.

    Two versions on the same images (--new; the inputs are the same, so drift is the model's), or two
    time windows of a capture for one version (without --new; the inputs' size and brightness are
    compared too, so 'the traffic changed' is told from 'the model changed').

    Examples:
        mldeploy drift ./golden --new v2
        mldeploy drift --capture ./capture --new v2
        mldeploy drift --capture ./capture -m faces --reference 2026-11-01..2026-11-08 --current 2026-11-08..
        mldeploy drift --capture ./capture --html drift/ --report drift.json

    Exit codes:
        0  PASS: every output feature's PSI is at most --max-psi
        2  usage error
        3  FAIL: an output feature drifted beyond --max-psi (the verdict says whether the inputs did too)
        4  a version cannot be loaded
        6  INCONCLUSIVE: fewer than 30 values on a side for every output feature
    """
    from mldeploy.errors import EXIT_GATE_FAILED, EXIT_INCONCLUSIVE, UsageError
    from mldeploy.report.drift import drift_table, write_drift_html, write_drift_json
    from mldeploy.rollout import drift as lib

    if html is not None:
        from mldeploy.report.bench import require_plotting

        require_plotting()
    if max_psi <= 0:
        raise UsageError(f"--max-psi {max_psi:g}: must be above 0 (the bands are 0.1 and 0.25)")
    with progress_bar("drift", progress) as bar:
        if new is not None:
            if reference or current:
                raise UsageError("--reference and --current compare windows of one version: leave out --new")
            result = lib.run_versions(project, model, old, new, paths=paths or (), capture=capture, engine=engine.make(project), max_psi=max_psi,
                                      on_listed=bar.start, on_item=bar)
        else:
            if capture is None:
                raise UsageError("say what to compare: --new VERSION (two versions on the same images) or --capture DIR (two windows)")
            if paths:
                raise UsageError("give images with --new, or --capture DIR: not both")
            result = lib.capture_windows(capture, model.partition("@")[0], old.rpartition("@")[2] if old else None, reference, current,
                                         max_psi=max_psi)
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out_console().print(drift_table(result))
    if report is not None:
        err_console.print(f"wrote {escape(str(write_drift_json(report, result)))}")
    if html is not None:
        err_console.print(f"wrote {escape(str(write_drift_html(html, result)))}")
    verdict_line(f"{result.headline()} (run {result.wall_seconds:.1f} s)")
    if result.status == "fail":
        raise typer.Exit(EXIT_GATE_FAILED)
    if result.status == "inconclusive":
        raise typer.Exit(EXIT_INCONCLUSIVE)
