"""The ``mldeploy`` command line: a thin Typer adapter over the library.

Nothing heavy is imported here: each command imports NumPy, OpenCV or TensorFlow inside its body, so
``mldeploy --help`` starts instantly.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mldeploy import __version__
from mldeploy.cli import bench as _bench
from mldeploy.cli import canary as _canary
from mldeploy.cli import capture as _capture
from mldeploy.cli import detect as _detect
from mldeploy.cli import drift as _drift
from mldeploy.cli import eval as _eval
from mldeploy.cli import export as _export
from mldeploy.cli import models as _models
from mldeploy.cli import rollout as _rollout
from mldeploy.cli import serve as _serve
from mldeploy.cli import shadow as _shadow
from mldeploy.cli import state as _state
from mldeploy.cli.console import App, state

app = App(
    name="mldeploy",
    help="""Local object detection and deployment rehearsal for detection models.

    Examples:
        mldeploy detect sample_images/
        mldeploy shadow --new v2 sample_images/
        mldeploy serve

    Exit codes:
        0  success (a rehearsal: PASS or REPORT ONLY)
        1  some inputs failed (each is named)
        2  usage error
        3  FAIL: a release gate failed
        4  a model cannot be loaded
        5  the state store cannot be read or written
        6  INCONCLUSIVE: too little evidence for a gate
    """,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mldeploy {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Options of every command."""
    if debug:
        state.debug = True
    else:  # TensorFlow's C++ start-up lines (oneDNN, CUDA probes, absl) are noise to a user; --debug shows them
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


app.command("detect", no_args_is_help=True)(_detect.detect)
app.command("eval", no_args_is_help=True)(_eval.eval_command)
app.add_typer(_models.app, name="models")
app.command("bench", no_args_is_help=True)(_bench.bench)
app.command("drift", no_args_is_help=True)(_drift.drift)
app.command("shadow", no_args_is_help=True, rich_help_panel="Rollout")(_shadow.shadow)
app.command("canary", no_args_is_help=True, rich_help_panel="Rollout")(_canary.canary)
app.command("promote", no_args_is_help=True, rich_help_panel="Rollout")(_rollout.promote)
app.command("rollback", no_args_is_help=True, rich_help_panel="Rollout")(_rollout.rollback)
app.command("history", rich_help_panel="Rollout")(_rollout.history)
app.command("route", rich_help_panel="Rollout")(_rollout.route)
app.command("serve", rich_help_panel="Serve")(_serve.serve)
app.add_typer(_capture.app, name="capture", rich_help_panel="Serve")
app.add_typer(_state.app, name="state", rich_help_panel="Serve")
app.add_typer(_export.app, name="export", rich_help_panel="Serve")


def main() -> None:
    app()
