"""``mldeploy canary --old v1 --new v2 PATH... --steps 5,25,50,100``: a rehearsed canary rollout."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mldeploy.cli.options import (
    DEFAULT_MODEL, GATES_GROUP, LABELS, PAIR_ENGINE, PROJECT, REPLAY_REPORTS, CaptureOption, ClassesOption, DriftIouOption, IouOption, ModelOption,
    PathsArgument, command_line, with_groups,
)
from mldeploy.cli.reporting import rehearse

NewOption = Annotated[str, typer.Option("--new", help="The canary: a version of --model (v2) or NAME@VERSION.", show_default=False)]
OldOption = Annotated[Optional[str], typer.Option("--old", help="The stable version \\[default: the live version of --model].", show_default=False)]
StepsOption = Annotated[str, typer.Option("--steps", help="Percentages of traffic sent to the canary, in order.")]
SaltOption = Annotated[str, typer.Option("--salt", help="Changes which images the router picks first (the same salt routes the same way).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Rehearse only: change no live version, write no history.")]


@with_groups
def canary(
    new: NewOption,
    paths: PathsArgument = None,
    old: OldOption = None,
    model: ModelOption = DEFAULT_MODEL,
    capture: CaptureOption = None,
    steps: StepsOption = "5,25,50,100",
    salt: SaltOption = "",
    dry_run: DryRunOption = False,
    iou: IouOption = 0.5,
    drift_iou: DriftIouOption = 0.8,
    classes: ClassesOption = None,
    project=PROJECT,
    labels=LABELS,
    engine=PAIR_ENGINE,
    output=REPLAY_REPORTS,
    gates=GATES_GROUP,
) -> None:
    """Send a growing share of the images to the new version, checking the gates at every step.

    Routing is sticky per image and the same on every run. The first failing step rolls back (the
    history says why); an inconclusive step keeps ramping, and the last step decides: PASS promotes
    (unless --dry-run), INCONCLUSIVE rolls back unless --inconclusive pass.

    Examples:
        mldeploy canary --new v2 ./imgs --dry-run
        mldeploy canary --old v1 --new v2 ./imgs --steps 10,50,100 --junit canary.xml
        mldeploy canary --capture ./capture --new v3 --dry-run

    Exit codes:
        0  promoted (or would be, with --dry-run)
        1  some images could not be read, or the old version failed on them
        2  usage error
        3  FAIL: a gate failed; rolled back
        4  a version cannot be loaded
        5  the state store cannot be read or written
        6  INCONCLUSIVE at the last step: rolled back (more images, or --inconclusive pass)
    """
    from mldeploy.rollout.spec import CanarySteps, Comparison, Inputs, RehearsalSpec

    spec = RehearsalSpec(Comparison(new, old, model, classes, iou, drift_iou), Inputs(tuple(paths or ()), capture), labels, gates, output.files, engine,
                         CanarySteps(steps, salt, dry_run, command_line()))
    rehearse(project, spec, output)
