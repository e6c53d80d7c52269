"""How ``shadow`` and ``canary`` run a rehearsal from the command line: progress, records, the decision,
the printed result, the report files and the exit code."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from mldeploy.cli.console import err_console, error_line, escape, loading_status, out_console, progress_bar
from mldeploy.cli.console import verdict_line as console_verdict_line
from mldeploy.cli.options import Output, ReportFormat
from mldeploy.errors import OutputError


#: Errors named one a line on stderr; the rest are counted (every one is in the JSON report or --records).
ERROR_LINES = 50


def rehearse(project, spec, output: Output) -> None:
    """Prepare and run the rehearsal ``spec`` describes, then print, write the reports and exit."""
    from mldeploy.rollout import rehearsal

    r = rehearsal.prepare(project, spec)
    files = output.files
    for note in r.notes:  # what it is judged on: a capture's labels, or agreement until enough have arrived
        err_console.print(escape(note))

    def show_step(step) -> None:
        deciding = step.failed_gates or step.inconclusive_gates
        which = f" ({', '.join(g.gate.flag for g in deciding)})" if deciding and step.verdict in ("fail", "inconclusive") else ""
        err_console.print(escape(f"step {step.share:g}%: {step.canary_requests} canary requests, {step.verdict}{which}"))

    with progress_bar(spec.kind, output.progress) as advance, recording(files.records, files.records_format, r.truths, advance) as on_record:
        advance.start(len(r.images))
        result = rehearsal.run(r, spec, on_record=on_record, on_step=show_step, loading=loading_status)
    if result.decision is not None:
        _say_decision(result.decision)
    finish(result, output.format, files.json, files.junit, files.html, output.top)


def _say_decision(d) -> None:
    if d.dry_run:
        err_console.print(f"dry run: would {'promote ' if d.promoted else 'roll back to '}{escape(d.target)}; nothing changed")
        return
    c = d.change
    if d.promoted:
        what = f"[green]promoted[/] {escape(c.model)}: {escape(c.from_version)} -> [bold]{escape(c.to_version)}[/]"
    elif c.from_version == c.to_version:
        what = f"[yellow]rolled back[/]: {escape(d.target)} stays live"
    else:
        what = f"[yellow]rolled back[/] {escape(c.model)}: {escape(c.from_version)} -> [bold]{escape(c.to_version)}[/]"
    err_console.print(f"{what} (history #{c.id}): {escape(d.reason)}")


@contextlib.contextmanager
def recording(folder: Path | None, fmt: str, truths, then=None):
    """The ``on_record`` of a replay: each image's row into ``--records`` as it finishes, then ``then(record)``
    (the progress bar). A run that fails leaves ``records.FORMAT.partial`` with the rows written so far."""
    if folder is None:
        yield then
        return
    from mldeploy.report.records import RecordsWriter

    with RecordsWriter(folder, fmt, truths) as writer:
        def on_record(record) -> None:
            writer.write(record)
            if then is not None:
                then(record)

        yield on_record
    err_console.print(f"wrote {escape(str(writer.path))} ({writer.rows} rows)")


def finish(report, output: ReportFormat, json_path: Path | None, junit: Path | None, html: Path | None, top: int) -> None:
    """Print, write the reports, name each failure, and exit with the code a CI job gates on."""
    from mldeploy.report.html import write_html
    from mldeploy.report.json_junit import write_json, write_junit
    from mldeploy.report.serialize import report_to_dict
    from mldeploy.report.tables import rehearsal_tables
    from mldeploy.rollout.gates import exit_code

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
    failures = [(record.source, str(record.input_error)) for record in report.records if record.input_error is not None]
    failures += [(record.source, str(side.error)) for record in report.records if record.input_error is None
                 for side in (record.old, record.new) if not side.ok]
    shown = failures[:ERROR_LINES]
    for source, message in shown:
        error_line(f"{escape(source)}: {escape(message)}")
    s = report.summary
    more = s.unreadable + s.old_errors + s.new_errors - len(shown)  # one per line a complete run would print
    if more > 0:
        where = (f"--records {report.settings['records']}" if report.settings.get("records")
                 else "the JSON report" if report.complete else "every row: rerun with --records DIR")
        error_line(f"{more} more errors ({s.unreadable} unreadable, {s.old_errors} old-version, {s.new_errors} new-version in all): "
                   f"see {escape(where)}")
    v = report.verdict
    for g in v.deciding if not v.ok else ():
        error_line(f"gate {'failed' if g.failed else 'inconclusive'}: {escape(g.message)}")
    for exc in unwritten:
        error_line(escape(str(exc)))
    code = exit_code(report)
    print_verdict(report)
    if not v.ok:
        raise typer.Exit(code)
    if unwritten:
        raise typer.Exit(unwritten[0].exit_code)
    if code:
        raise typer.Exit(code)


def verdict_line(report) -> str:
    """The verdict as one line, first word PASS, FAIL, INCONCLUSIVE or REPORT ONLY, then what was compared
    and how long loading and the run took: ``FAIL: --min-recall (faces@v1 -> faces@v2, 5 images compared,
    load 3.9 s, run 2.1 s)``."""
    v, s = report.verdict, report.summary
    load = f"load {report.load_seconds:.1f} s, " if report.load_seconds else ""
    advice = "; more images, or --inconclusive pass" if v.status == "inconclusive" else ""
    return f"{v.headline} ({s.old} -> {s.new}, {s.compared} images compared, {load}run {report.wall_seconds:.1f} s{advice})"


def print_verdict(report) -> None:
    console_verdict_line(verdict_line(report))
