"""``mldeploy promote``, ``rollback`` and ``history``: the live version of each model, and its past."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Optional

import typer

from mldeploy.cli.console import err_console, escape, out_console
from mldeploy.cli.options import ConfigOption, StateDirOption, command_line, project


class HistoryFormat(str, Enum):
    table = "table"
    json = "json"


def promote(
    model: Annotated[str, typer.Argument(help="Model name (e.g. faces), or NAME@VERSION.", show_default=False)],
    version: Annotated[Optional[str], typer.Argument(help="Version to make live (e.g. v2).", show_default=False)] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the history.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Promote even if the version's files are missing here.")] = False,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Make VERSION the live version of MODEL: every later detect (and the server's live route) uses it.

    The switch is one transaction, recorded in the history; 'mldeploy rollback MODEL' switches back.

    Examples:
        mldeploy promote faces v2 --reason "shadow passed on 2,000 images"
        mldeploy promote faces@v2
    """
    from mldeploy.errors import UsageError
    from mldeploy.rollout.releases import promote as do_promote

    proj = project(state_dir, config)
    registry = proj.registry()
    if "@" in model:
        if version is not None:
            raise UsageError(f"give either {model} or a MODEL and VERSION, not both")
        spec = registry.resolve(model)
    elif version is None:
        raise UsageError(f"which version of {model}? e.g. mldeploy promote {model} v2 (see 'mldeploy models')")
    else:
        spec = registry.resolve(f"{model}@{version}")
    change = do_promote(proj, spec, reason=reason, command=command_line(), force=force)
    if change is None:
        err_console.print(f"{escape(spec.ref)} is already live; nothing changed")
        return
    err_console.print(f"[green]promoted[/] {escape(change.model)}: {escape(change.from_version)} -> [bold]{escape(change.to_version)}[/] (history #{change.id})")


def rollback(
    model: Annotated[str, typer.Argument(help="Model name, e.g. faces.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the history.")] = "",
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Switch MODEL back to the version that was live before the current one (again: back again).

    Examples:
        mldeploy rollback faces --reason "p95 doubled"
    """
    from mldeploy.models import parse_ref
    from mldeploy.rollout.releases import rollback as do_rollback

    name, _ = parse_ref(model)
    change = do_rollback(project(state_dir, config), name, reason=reason, command=command_line())
    err_console.print(f"[yellow]rolled back[/] {escape(change.model)}: {escape(change.from_version)} -> [bold]{escape(change.to_version)}[/] (history #{change.id})")


def history(
    model: Annotated[Optional[str], typer.Argument(help="Only this model.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Only the last N changes.")] = None,
    output: Annotated[HistoryFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")] = HistoryFormat.table,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Every change of live version, oldest first: from, to, when, why, and by which command.

    Examples:
        mldeploy history
        mldeploy history faces --format json
    """
    from dataclasses import asdict

    from rich.table import Table

    proj = project(state_dir, config)
    name = model.partition("@")[0] if model else None
    changes = proj.store().history(name, limit)
    live = proj.store().live_versions()
    if output is HistoryFormat.json:
        typer.echo(json.dumps({"live": live if name is None else {k: v for k, v in live.items() if k == name},
                               "history": [asdict(c) for c in changes]}, indent=2))
        return
    if not changes:
        err_console.print(f"no changes recorded{' for ' + escape(name) if name else ''} in {escape(proj.store().location)}")
        return
    table = Table(title=f"history{' of ' + escape(name) if name else ''}", title_justify="left")
    for column in ("#", "when (UTC)", "model", "from", "to", "by", "reason"):
        table.add_column(column, no_wrap=column != "reason", overflow="fold")
    for c in changes:
        style = "yellow" if "rollback" in c.action else "green"
        table.add_row(str(c.id), c.at[:19].replace("T", " "), escape(c.model), escape(c.from_version), f"[bold]{escape(c.to_version)}[/]",
                      f"[{style}]{c.action}[/]", escape(c.reason))
    live_now = ", ".join(f"{escape(k)}@{escape(v)}" for k, v in live.items() if name is None or k == name)
    table.caption = f"live now: {live_now}. --format json adds each change's full command line and user@host."
    out_console().print(table)


def route(
    model: Annotated[Optional[str], typer.Argument(help="Model to change; without one, list every route.", show_default=False)] = None,
    shadow: Annotated[Optional[str], typer.Option("--shadow", help="Version that shadows the live one.", show_default=False)] = None,
    no_shadow: Annotated[bool, typer.Option("--no-shadow", help="Stop the shadow.")] = False,
    canary: Annotated[Optional[str], typer.Option("--canary", help="Canary version (with --weight).", show_default=False)] = None,
    weight: Annotated[Optional[float], typer.Option("--weight", min=0, max=100, help="Percent of clients on the canary.")] = None,
    no_canary: Annotated[bool, typer.Option("--no-canary", help="Stop the canary: every client back on the live version.")] = False,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the history.")] = "",
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Live routing for running servers: start or stop a shadow, set or stop a canary and its weight.

    Servers watching the same state directory apply a change within a second.

    Examples:
        mldeploy route
        mldeploy route faces --shadow v2
        mldeploy route faces --canary v2 --weight 10
        mldeploy route faces --no-canary
    """
    from mldeploy.errors import UsageError
    from mldeploy.rollout.releases import set_route
    from mldeploy.store import KEEP

    proj = project(state_dir, config)
    if model is None:
        live, routes = proj.store().snapshot()
        if not routes:
            err_console.print("no shadow or canary is set")
        for name, r in sorted(routes.items()):
            canary_text = f"{r.canary_version} at {r.canary_weight:g}%" if r.canary_version else "off"
            out_console().print(f"{escape(name)}: live {escape(live.get(name, proj.registry().default_version(name)))}, "
                                f"shadow {escape(r.shadow_version or 'off')}, canary {escape(canary_text)}")
        return
    if shadow and no_shadow or canary and no_canary:
        raise UsageError("give a version or turn it off, not both")
    if canary and weight is None:
        raise UsageError(f"--canary {canary} needs --weight (percent of clients), e.g. --weight 10")
    if not any((shadow, no_shadow, canary, no_canary, weight is not None)):
        raise UsageError("nothing to change: give --shadow, --no-shadow, --canary with --weight, --weight or --no-canary")
    r = set_route(proj, model.partition("@")[0], shadow=None if no_shadow else (shadow or KEEP),
                  canary=None if no_canary else (canary or KEEP), weight=weight, reason=reason, command=command_line())
    canary_text = f"{r.canary_version} at {r.canary_weight:g}%" if r.canary_version else "off"
    err_console.print(f"{escape(model)}: shadow {escape(r.shadow_version or 'off')}, canary {escape(canary_text)}")
