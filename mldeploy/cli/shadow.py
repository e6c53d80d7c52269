"""``mldeploy shadow --old v1 --new v2 PATH...``: replay images through two versions and compare."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mldeploy.cli.options import (
    DEFAULT_MODEL, GATES_GROUP, LABELS, PAIR_ENGINE, PROJECT, REPLAY_REPORTS, CaptureOption, ClassesOption, DriftIouOption, IouOption, ModelOption,
    PathsArgument, with_groups,
)
from mldeploy.cli.reporting import rehearse

NewOption = Annotated[str, typer.Option("--new", metavar="VERSION", help="The candidate: a version of --model (v2) or NAME@VERSION.", show_default=False)]
OldOption = Annotated[Optional[str], typer.Option("--old", metavar="VERSION", help="The reference \\[default: the live version of --model].", show_default=False)]


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

    The default policy gates recall, precision, drift, latency and errors; --gates none keeps only the
    bounds you give. The last line on stderr is the verdict: PASS, FAIL, INCONCLUSIVE or REPORT ONLY.

    Examples:
        mldeploy shadow --new v2 sample_images/
        mldeploy shadow --old v1 --new v2 ./imgs --labels labels.json --junit shadow.xml
        mldeploy shadow --capture ./capture --new v3 --report shadow.json

    Exit codes:
    0  PASS or REPORT ONLY
    1  some images could not be read, or the old version failed on them
    2  usage error
    3  FAIL: a gate failed (each is named with its figure, bound and evidence)
    4  a version cannot be loaded
    5  the state store cannot be read or written
    6  INCONCLUSIVE: too little evidence for a gate (more images, or --inconclusive pass)
    """
    from mldeploy.rollout.spec import Comparison, Inputs, RehearsalSpec

    spec = RehearsalSpec(Comparison(new, old, model, classes, iou, drift_iou), Inputs(tuple(paths or ()), capture), labels, gates, output.files, engine)
    rehearse(project, spec, output)
