"""Options several commands share: the project's state and config, gates, and report files."""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mldeploy.rollout.gates import GATES

StateDirOption = Annotated[
    Optional[Path],
    typer.Option("--state-dir", envvar="MLDEPLOY_STATE_DIR", show_default=False,
                 help="Where live versions and history are kept \\[default: ./.mldeploy]."),
]
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", envvar="MLDEPLOY_CONFIG", show_default=False,
                 help="Project file with your own versions and gates \\[default: ./mldeploy.toml if present]."),
]


def project(state_dir: Path | None, config: Path | None):
    from mldeploy.project import Project

    return Project(state_dir=state_dir, config_path=config)


def command_line() -> str:
    """The command as the user typed it, for the history's ``command`` column."""
    return shlex.join(["mldeploy", *sys.argv[1:]])


def with_gate_options(func):
    """Add one ``--max-...`` / ``--min-...`` option per gate in :data:`GATES` to a command; the
    command receives them together as ``gate_flags`` (name -> bound or None)."""
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.name != "gate_flags"]
    for gate in GATES.values():
        default = f" \\[default: {gate.default:g}]" if gate.default is not None else ""
        unit = " (milliseconds)" if gate.unit == "ms" else " (a share from 0 to 1)" if gate.unit == "%" else ""
        option = typer.Option(None, gate.flag, show_default=False, rich_help_panel="Gates (exit 3 when one fails)",
                              help=f"{'Upper' if gate.kind == 'max' else 'Lower'} bound on the {gate.what}{unit}{default}.")
        params.append(inspect.Parameter(gate.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[float]))

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        flags = {name: kwargs.pop(name, None) for name in GATES}
        return func(*args, gate_flags=flags, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), **{name: Optional[float] for name in GATES}}
    wrapper.__annotations__.pop("gate_flags", None)
    return wrapper
