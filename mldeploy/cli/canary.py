"""``mldeploy canary --old v1 --new v2 PATH... --steps 5,25,50,100``: a rehearsed canary rollout."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, escape
from mldeploy.cli.options import (
    DEFAULT_MODEL, ActorCpusOption, ActorsOption, AddressOption, CaptureOption, EngineOption, LabelMapOption, LabelsOption, NamesOption, ClassesOption, ConfigOption, DriftIouOption, InconclusiveOption, PolicyOption, HtmlOption, IouOption, JunitOption, ModelOption, ParallelOption, RecordsFormat, RecordsFormatOption, RecordsOption, ReportOption, StateDirOption, TopOption,
    command_line, project, ray_options, records_options, with_gate_options,
)
from mldeploy.cli.reporting import ReportFormat, finish, recording


@with_gate_options
def canary(
    new: Annotated[str, typer.Option("--new", help="The canary: a version of --model (v2) or NAME@VERSION.", show_default=False)],
    paths: Annotated[Optional[List[str]], typer.Argument(metavar="[PATH]...", help="Image files, folders, glob patterns, s3://bucket/prefix and @MANIFEST files: the traffic to replay (or --capture DIR).", show_default=False)] = None,
    old: Annotated[Optional[str], typer.Option("--old", help="The stable version \\[default: the live version of --model].", show_default=False)] = None,
    model: ModelOption = DEFAULT_MODEL,
    capture: CaptureOption = None,
    labels: LabelsOption = None,
    label_map: LabelMapOption = None,
    names: NamesOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    actors: ActorsOption = None,
    actor_cpus: ActorCpusOption = None,
    steps: Annotated[str, typer.Option("--steps", help="Percentages of traffic sent to the canary, in order.")] = "5,25,50,100",
    salt: Annotated[str, typer.Option("--salt", help="Changes which images the router picks first (the same salt routes the same way).")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Rehearse only: change no live version, write no history.")] = False,
    iou: IouOption = 0.5,
    drift_iou: DriftIouOption = 0.8,
    classes: ClassesOption = None,
    top: TopOption = 10,
    output: Annotated[ReportFormat, typer.Option("--format", "-f", help="table for people; json prints the full result on stdout.")] = ReportFormat.table,
    report: ReportOption = None,
    junit: JunitOption = None,
    html: HtmlOption = None,
    records: RecordsOption = None,
    records_format: RecordsFormatOption = RecordsFormat.jsonl,
    parallel: ParallelOption = False,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    gates: PolicyOption = None,
    inconclusive: InconclusiveOption = None,
    gate_flags: dict = None,
) -> None:
    """Send a growing share of the images to the new version, checking the gates at every step.

    Routing is sticky per image and the same on every run. The first failing step rolls back: the old
    version stays (or becomes again) live and the history says why; exit 3. A step with too little
    evidence is inconclusive and the rollout keeps ramping; the last step decides: PASS promotes the new
    version (unless --dry-run), INCONCLUSIVE rolls back unless --inconclusive pass.

    Exit codes: 0 promoted (or would be, with --dry-run), 3 rolled back, 1 some images could not be
    read, 2 usage error, 4 a version cannot be loaded, 5 the state store cannot be written.
    """
    from mldeploy.rollout import rehearsal

    def show_step(step) -> None:
        err_console.print(f"step {step.share:g}%: {step.canary_requests} canary requests, {step.verdict}")

    ray = ray_options(engine, address, actors, actor_cpus)
    records_as = records_options(records, records_format)
    r = rehearsal.prepare(project(state_dir, config), paths or [], new, old=old, model=model, classes=classes, gate_flags=gate_flags,
                          policy=gates, on_inconclusive=inconclusive, drift_iou=drift_iou, outputs=(report, junit), html=html, records=records, capture=capture,
                          labels=labels, label_map=label_map, names=names)
    with recording(records, records_as, r.truths) as on_record:
        result = rehearsal.canary(r, steps=steps, salt=salt, dry_run=dry_run, iou=iou, workers=2 if parallel else 1, command=command_line(),
                                  on_step=show_step if err_console.is_terminal else None, on_record=on_record, ray=ray)
    _say_decision(result.decision)
    finish(result, output, report, junit, html, top)


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
