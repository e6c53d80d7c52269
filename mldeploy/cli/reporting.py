"""How ``shadow`` and ``canary`` print a rehearsal, write its report files and choose the exit code."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from mldeploy.cli.console import err_console, error_line, escape, out_console
from mldeploy.errors import EXIT_GATE_FAILED, OutputError


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


def finish(report, output: ReportFormat, json_path: Path | None, junit: Path | None, html: Path | None, top: int) -> None:
    """Print, write the reports, name each failure, and exit with the code a CI job gates on."""
    from mldeploy.report.html import write_html
    from mldeploy.report.json_junit import write_json, write_junit
    from mldeploy.report.serialize import report_to_dict
    from mldeploy.report.tables import rehearsal_tables

    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(report_to_dict(report), indent=2) + "\n")
    else:
        console = out_console()
        for table in rehearsal_tables(report, top):
            console.print(table)
    protect = [record.item.path for record in report.records]
    writers = [(path, writer) for path, writer in ((json_path, write_json), (junit, write_junit), (html, write_html)) if path is not None]
    unwritten = []
    for path, writer in writers:
        try:
            err_console.print(f"wrote {escape(str(writer(path, report, protect)))}")
        except OutputError as exc:  # checked before the run; a disk that fills up since must not hide the verdict
            unwritten.append(exc)

    for arg, err in report.unmatched:
        error_line(f"{escape(arg)}: {escape(str(err))}")
    for record in report.records:
        if record.input_error is not None:
            error_line(f"{escape(record.source)}: {escape(str(record.input_error))}")
        else:
            for side in (record.old, record.new):
                if not side.ok:
                    error_line(f"{escape(record.source)}: {escape(str(side.error))}")
    v = report.verdict
    for g in v.deciding if not v.ok else ():
        error_line(f"gate {'failed' if g.failed else 'inconclusive'}: {escape(g.message)}")
    s = report.summary
    where = f"({escape(s.old)} -> {escape(s.new)}, {s.compared} images compared, {report.wall_seconds:.1f} s)"
    for exc in unwritten:
        error_line(escape(str(exc)))
    if not v.ok:
        advice = " (more images, or --inconclusive pass)" if v.status == "inconclusive" else ""
        err_console.print(f"[bold red]{escape(v.headline)}[/] {where}{advice}")
        raise typer.Exit(EXIT_GATE_FAILED)
    colour = "bold green" if v.status == "pass" else "bold yellow"
    err_console.print(f"[{colour}]{escape(v.headline)}[/] {where}")
    if unwritten:
        raise typer.Exit(unwritten[0].exit_code)
    if report.input_errors:
        raise typer.Exit(1)
