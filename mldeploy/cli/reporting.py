"""How ``shadow`` and ``canary`` print a rehearsal, write its report files and choose the exit code."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from mldeploy.cli.console import err_console, error_line, escape, out_console
from mldeploy.errors import EXIT_GATE_FAILED


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
    written = []
    if json_path is not None:
        written.append(write_json(json_path, report, protect))
    if junit is not None:
        written.append(write_junit(junit, report, protect))
    if html is not None:
        written.append(write_html(html, report, protect))
    for path in written:
        err_console.print(f"wrote {escape(str(path))}")

    for arg, err in report.unmatched:
        error_line(f"{escape(arg)}: {escape(str(err))}")
    for record in report.records:
        if record.input_error is not None:
            error_line(f"{escape(record.source)}: {escape(str(record.input_error))}")
        else:
            for side in (record.old, record.new):
                if not side.ok:
                    error_line(f"{escape(record.source)}: {escape(str(side.error))}")
    failed = report.failed_gates
    for g in failed:
        error_line(f"gate failed: {escape(g.message)}")
    s = report.summary
    if failed:
        err_console.print(f"[bold red]FAIL[/]: {len(failed)} of {len(report.gates)} gates failed ({escape(s.old)} -> {escape(s.new)}, "
                          f"{report.wall_seconds:.1f} s)")
        raise typer.Exit(EXIT_GATE_FAILED)
    err_console.print(f"[bold green]PASS[/]: all {len(report.gates)} gates passed ({escape(s.old)} -> {escape(s.new)}, {s.compared} images compared, "
                      f"{report.wall_seconds:.1f} s)")
    if report.input_errors:
        raise typer.Exit(1)
