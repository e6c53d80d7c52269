"""``mldeploy state``: move the state (live versions, history, routes, shadow counters, pins) between stores."""

from __future__ import annotations

from typing import Annotated

import typer

from mldeploy.cli.console import App, err_console, escape
from mldeploy.cli.options import ConfigOption, StateDirOption, project

app = App(help="Move the state between stores: a folder's SQLite file and a PostgreSQL database.", add_completion=False)


@app.command("copy")
def copy(
    to: Annotated[str, typer.Option("--to", metavar="URL|DIR", show_default=False, help="Where to copy the state: an empty PostgreSQL database or folder.")],
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Copy every row of the state (--state, the source) into an empty store, history ids kept.

    Nothing is merged or overwritten: a target that already holds a history is refused (exit 5).

    Examples:
        mldeploy state copy --to postgresql://mldeploy@db/mldeploy
        mldeploy state copy --state ./.mldeploy --to postgresql://mldeploy@db/mldeploy

    Exit codes:
        0  copied
        5  the source holds no state, the target is not empty, or either cannot be reached
    """
    from mldeploy.project import Project
    from mldeploy.store import copy_state, open_store

    source = project(state_dir, config).store()
    target_project = Project(state_dir=to)
    target = open_store(target_project.state_dir)
    counts = copy_state(source, target)
    err_console.print(escape(f"copied {source.location} -> {target.location}: "
                             + ", ".join(f"{n} {table} rows" for table, n in counts.items())))
