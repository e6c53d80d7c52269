"""``mldeploy shadow --old v1 --new v2 PATH...``: replay images through two versions and compare."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import progress_bar
from mldeploy.cli.options import (
    DEFAULT_MODEL, ActorCpusOption, ActorsOption, AddressOption, CaptureOption, EngineOption, LabelMapOption, LabelsOption, NamesOption, ClassesOption, ConfigOption, DriftIouOption, InconclusiveOption, PolicyOption, HtmlOption, IouOption, JunitOption, ModelOption, ParallelOption, RecordsFormat, RecordsFormatOption, RecordsOption, ReportOption, StateDirOption, TopOption,
    project, ray_options, records_options, with_gate_options,
)
from mldeploy.cli.reporting import ReportFormat, finish, recording


@with_gate_options
def shadow(
    new: Annotated[str, typer.Option("--new", help="The candidate: a version of --model (v2) or NAME@VERSION.", show_default=False)],
    paths: Annotated[Optional[List[str]], typer.Argument(metavar="[PATH]...", help="Image files, folders (searched recursively), glob patterns, s3://bucket/prefix and @MANIFEST (a path or URI a line), or --capture DIR.", show_default=False)] = None,
    old: Annotated[Optional[str], typer.Option("--old", help="The reference \\[default: the live version of --model].", show_default=False)] = None,
    model: ModelOption = DEFAULT_MODEL,
    capture: CaptureOption = None,
    labels: LabelsOption = None,
    label_map: LabelMapOption = None,
    names: NamesOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    actors: ActorsOption = None,
    actor_cpus: ActorCpusOption = None,
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
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr (when it is a terminal).")] = True,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
    gates: PolicyOption = None,
    inconclusive: InconclusiveOption = None,
    gate_flags: dict = None,
) -> None:
    """Run two versions on the same images and report where they disagree (the old one is the reference).

    The default policy gates recall, precision, drift, p50 and p95 latency and errors; --gates none
    turns it off (a run with no quality gate then says REPORT ONLY, not PASS).

    Exit codes: 0 PASS or REPORT ONLY, 3 a gate failed or was inconclusive (each is named with its figure,
    bound and evidence), 1 some images could not be read or the old version failed on them, 2 usage error,
    4 a version cannot be loaded, 5 the state store cannot be read.
    """
    from mldeploy.rollout import rehearsal

    ray = ray_options(engine, address, actors, actor_cpus)
    records_as = records_options(records, records_format)
    r = rehearsal.prepare(project(state_dir, config), paths or [], new, old=old, model=model, classes=classes, gate_flags=gate_flags,
                          policy=gates, on_inconclusive=inconclusive, drift_iou=drift_iou, outputs=(report, junit), html=html, records=records, capture=capture,
                          labels=labels, label_map=label_map, names=names)
    with progress_bar("shadow", len(r.images), progress) as advance, recording(records, records_as, r.truths, advance) as on_record:
        result = rehearsal.shadow(r, iou=iou, workers=2 if parallel else 1, on_record=on_record, ray=ray)
    finish(result, output, report, junit, html, top)
