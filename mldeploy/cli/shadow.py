"""``mldeploy shadow --old v1 --new v2 PATH...``: replay images through two versions and compare."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mldeploy.cli.options import (
    DEFAULT_MODEL, GATES_GROUP, LABELS, PAIR_ENGINE, PROJECT, REPLAY_REPORTS, CaptureOption, ClassesOption, DriftIouOption, IouOption, ModelOption,
    PathsArgument, with_groups,
)
from mldeploy.cli.reporting import rehearse

NewOption = Annotated[str, typer.Option("--new", help="The candidate: a version of --model (v2) or NAME@VERSION.", show_default=False)]
OldOption = Annotated[Optional[str], typer.Option("--old", help="The reference \\[default: the live version of --model].", show_default=False)]


@with_groups
def shadow(
    new: NewOption,
    paths: PathsArgument = None,
    old: OldOption = None,
    model: ModelOption = DEFAULT_MODEL,
    capture: CaptureOption = None,
    iou: IouOption = 0.5,
    drift_iou: DriftIouOption = 0.8,
    classes: ClassesOption = None,
    project=PROJECT,
    labels=LABELS,
    engine=PAIR_ENGINE,
    output=REPLAY_REPORTS,
    gates=GATES_GROUP,
) -> None:
    """Run two versions on the same images and report where they disagree (the old one is the reference).

    The default policy gates recall, precision, drift, p50 and p95 latency and errors; --gates none
    turns it off (a run with no quality gate then says REPORT ONLY, not PASS).

    Exit codes: 0 PASS or REPORT ONLY, 3 a gate failed or was inconclusive (each is named with its figure,
    bound and evidence), 1 some images could not be read or the old version failed on them, 2 usage error,
    4 a version cannot be loaded, 5 the state store cannot be read.
    """
    from mldeploy.rollout.spec import Comparison, Inputs, RehearsalSpec

    spec = RehearsalSpec(Comparison(new, old, model, classes, iou, drift_iou), Inputs(tuple(paths or ()), capture), labels, gates, output.files, engine)
    rehearse(project, spec, output)
